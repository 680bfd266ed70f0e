"""Patient-level, label-stratified, deterministic split and fold assignment.

A split is decided per group of patients, never per image: a patient's views,
both breasts, and any patient whose pixels duplicate another's all land on
one side. The order comes from a keyed hash of the group id, so the same
group goes to the same split on every machine and every rebuild, whatever
order the files were found in.

Cross-validation folds are the same cut with K equal shares named 0..K-1
(`assign_folds`), so folds obey exactly the rules the builders' splits do.
"""
import collections
import hashlib
from typing import Hashable, Iterable, Mapping, Sequence, Tuple

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)


def _rank(group_id: str, seed: int) -> str:
  return hashlib.sha256(f"{seed}:{group_id}".encode()).hexdigest()


def assign(
    group_labels: Mapping[str, int],
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
    names: Sequence[Hashable] = SPLITS,
) -> dict:
  """Maps each group id to a split name (or fold number: `names`).

  Args:
    group_labels: group id -> stratum (the label used for stratification; for
      a group with several labels, pass the one it should count under, e.g.
      malignant if any breast is malignant).
    fractions: the share of each of `names`; they must sum to 1.
    seed: changes the assignment while keeping it deterministic.
    names: what the groups are assigned to, one per fraction (default
      train / validation / test).

  Within each stratum groups are ordered by hash and cut at the cumulative
  fractions (rounded), so every split gets its share of each label: a
  stratum's count in a split is within 1 of its share (rounding at both ends).
  """
  if len(fractions) != len(names) or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
    raise ValueError(f"split fractions must be {len(names)} non-negative numbers summing to 1, got {fractions}")
  strata = collections.defaultdict(list)
  for group_id, stratum in group_labels.items():
    strata[stratum].append(group_id)
  result = {}
  for members in strata.values():
    members.sort(key=lambda g: _rank(str(g), seed))
    n = len(members)
    bounds, acc = [], 0.0
    for fraction in fractions:
      acc += fraction
      bounds.append(round(acc * n))
    start = 0
    for split, end in zip(names, bounds):
      for group_id in members[start:end]:
        result[group_id] = split
      start = end
  return result


def connected_groups(items: Iterable[Hashable], links: Iterable[Tuple[Hashable, Hashable]]) -> dict:
  """Union-find: maps each item to the smallest item of its connected group.

  Used to merge patients whose images have identical pixels, so that the
  merged group is assigned to one split.
  """
  parent = {item: item for item in items}

  def find(item):
    while parent[item] != item:
      parent[item] = parent[parent[item]]
      item = parent[item]
    return item

  for a, b in links:
    root_a, root_b = find(a), find(b)
    if root_a != root_b:
      low, high = sorted((root_a, root_b))
      parent[high] = low
  return {item: find(item) for item in parent}


def assign_patients(patient_strata: Mapping[str, Hashable], links: Iterable[Tuple[str, str]] = (),
                    seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    names: Sequence[Hashable] = SPLITS) -> dict:
  """Patient -> split, with linked patients (e.g. identical pixels) kept on one side.

  Args:
    patient_strata: patient id -> its stratum (e.g. 1 if any breast is malignant).
    links: pairs of patients that must share a split; a linked group is
      stratified under the largest stratum of its members.
    seed, fractions, names: as for `assign`.
  """
  group_of = connected_groups(patient_strata, links)
  group_strata = {}
  for patient, stratum in patient_strata.items():
    group = group_of[patient]
    group_strata[group] = max(group_strata.get(group, stratum), stratum)
  split_of_group = assign(group_strata, fractions, seed, names)
  return {patient: split_of_group[group] for patient, group in group_of.items()}


def assign_folds(patient_strata: Mapping[str, Hashable], links: Iterable[Tuple[str, str]] = (),
                 folds: int = 5, seed: int = 0) -> dict:
  """Patient -> fold number 0..folds-1, by the builders' own split rule (`assign_patients`).

  Equal shares: within each stratum, fold sizes (in linked groups) differ by
  at most one. Linked patients (identical pixels) share a fold.
  """
  if folds < 2:
    raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
  return assign_patients(patient_strata, links, seed, [1 / folds] * folds, range(folds))


def image_folds(patient_ids: Sequence[str], labels: Sequence[int], pixel_keys: Sequence[Hashable],
                folds: int = 5, seed: int = 0) -> list:
  """The fold of each image, from per-image columns (as a trainer reads them from a built dataset).

  A patient's stratum is their highest label (malignant if any image is);
  patients with an image of the same `pixel_keys` value (a digest of its
  pixels) are linked, so duplicates never straddle folds.
  """
  strata, first_with = {}, {}
  links = []
  for patient, label, key in zip(patient_ids, labels, pixel_keys):
    strata[patient] = max(strata.get(patient, label), label)
    first = first_with.setdefault(key, patient)
    if first != patient:
      links.append((first, patient))
  fold_of = assign_folds(strata, links, folds, seed)
  return [fold_of[patient] for patient in patient_ids]
