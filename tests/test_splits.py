"""Patient-level split assignment: disjoint, stratified, deterministic."""
import collections
import random

import pytest

from mammo_tfds import splits


def _groups(n=400, malignant_share=0.7, seed=0):
  rng = random.Random(seed)
  return {f"P{i:04d}": int(rng.random() < malignant_share) for i in range(n)}


def test_every_group_gets_exactly_one_split():
  groups = _groups()
  assignment = splits.assign(groups)
  assert set(assignment) == set(groups)
  assert set(assignment.values()) == set(splits.SPLITS)


def test_independent_of_input_order():
  groups = _groups()
  shuffled = list(groups.items())
  random.Random(3).shuffle(shuffled)
  assert splits.assign(dict(shuffled)) == splits.assign(groups)


def test_seed_changes_assignment_deterministically():
  groups = _groups()
  assert splits.assign(groups, seed=1) == splits.assign(groups, seed=1)
  assert splits.assign(groups, seed=1) != splits.assign(groups, seed=2)


def test_stratified_by_label():
  groups = _groups(1000)
  assignment = splits.assign(groups)
  for label in (0, 1):
    members = [g for g, l in groups.items() if l == label]
    counts = collections.Counter(assignment[g] for g in members)
    for split, fraction in zip(splits.SPLITS, splits.DEFAULT_FRACTIONS):
      assert abs(counts[split] - fraction * len(members)) <= 1


def test_adding_groups_moves_few_existing_ones():
  """Hash order: a rebuild with a few more patients keeps most assignments."""
  small = splits.assign(_groups(400))
  large = splits.assign({**_groups(400), **{f"Q{i}": 1 for i in range(10)}})
  moved = sum(small[g] != large[g] for g in small)
  assert moved < 0.1 * len(small)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.8, 0.15, 0.15), (1.2, -0.1, -0.1)])
def test_bad_fractions_are_refused(fractions):
  with pytest.raises(ValueError, match="fractions"):
    splits.assign({"a": 0}, fractions=fractions)


def test_connected_groups_merge_transitively():
  groups = splits.connected_groups("ABCDE", [("B", "D"), ("D", "E")])
  assert groups == {"A": "A", "B": "B", "C": "C", "D": "B", "E": "B"}


def _development_images(n_patients=300, seed=0):
  """Per-image columns with the traps folds must respect: several images per patient, mixed labels in a
  patient, and identical pixels under two patient ids (one pair with opposite labels, as in CMMD)."""
  rng = random.Random(seed)
  patients, labels, keys = [], [], []
  for i in range(n_patients):
    patient = f"P{i:04d}"
    for breast in range(rng.choice((1, 2))):
      label = int(rng.random() < 0.6)
      for view in ("CC", "MLO"):
        patients.append(patient)
        labels.append(label)
        keys.append(f"{patient}-{breast}-{view}")
  # P0001's first image duplicated under P0250 (opposite label) and P0250's under P0299: a chain of three.
  patients += ["P0250", "P0299"]
  labels += [1 - labels[0], 0]
  keys += [keys[0], keys[0]]
  return patients, labels, keys


def test_folds_keep_patients_and_duplicate_groups_together():
  patients, labels, keys = _development_images()
  folds = splits.image_folds(patients, labels, keys, folds=5, seed=3)
  assert len(folds) == len(patients) and set(folds) == set(range(5))  # every image exactly one fold
  fold_of_patient = collections.defaultdict(set)
  fold_of_pixels = collections.defaultdict(set)
  for patient, key, fold in zip(patients, keys, folds):
    fold_of_patient[patient].add(fold)
    fold_of_pixels[key].add(fold)
  assert all(len(f) == 1 for f in fold_of_patient.values())
  assert all(len(f) == 1 for f in fold_of_pixels.values())
  assert fold_of_patient["P0000"] == fold_of_patient["P0250"] == fold_of_patient["P0299"]


def test_folds_are_stratified_within_one_patient_per_fold():
  """Tolerance 1 patient per stratum and fold: the cut rounds the cumulative share at both ends of a fold,
  so a count can be off its exact share by less than 1 and no more; anything looser would hide a bug."""
  strata = _groups(1000, malignant_share=0.3)
  fold_of = splits.assign_folds(strata, folds=5, seed=7)
  for label in (0, 1):
    members = [p for p, l in strata.items() if l == label]
    counts = collections.Counter(fold_of[p] for p in members)
    assert sorted(counts) == list(range(5))
    assert max(abs(c - len(members) / 5) for c in counts.values()) <= 1


def test_folds_deterministic_order_free_and_seeded():
  strata = _groups(200)
  shuffled = list(strata.items())
  random.Random(1).shuffle(shuffled)
  assert splits.assign_folds(dict(shuffled), folds=4, seed=2) == splits.assign_folds(strata, folds=4, seed=2)
  assert splits.assign_folds(strata, folds=4, seed=2) != splits.assign_folds(strata, folds=4, seed=5)


def test_folds_use_the_split_cut():
  """Two folds of equal share are the same cut as a 50/50 split: one implementation, not two."""
  strata = _groups(101)
  halves = splits.assign_patients(strata, seed=4, fractions=(0.5, 0.5), names=("a", "b"))
  assert splits.assign_folds(strata, folds=2, seed=4) == {p: "ab".index(s) for p, s in halves.items()}


def test_fewer_than_two_folds_refused():
  with pytest.raises(ValueError, match="at least 2 folds"):
    splits.assign_folds(_groups(10), folds=1)
