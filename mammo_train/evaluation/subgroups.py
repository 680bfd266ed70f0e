"""Who the model fails: metrics per subgroup, and the model against the shortcut inside each stratum.

Which subgroups exist is the dataset's business, not the evaluation's: each
builder declares them once, in its `tfds.core.MetadataDict`, which TFDS stores
as `metadata.json` beside the prepared records. The trainer reads it from
there (`tfds.builder(name, data_dir).info.metadata`), never from a builder
module. The declaration, under the key "subgroups":

  {"features": [{"name": "subset"},
                {"name": "age", "bands": [40, 50, 60, 70], "missing": -1},
                {"name": "view"}, {"name": "laterality"}],
   "shortcuts": ["age", "subset"]}

- features: scalar features (ClassLabel, Text, or numbers) whose values name
  the subgroups. A number is cut into `bands` (here <40, 40-49, 50-59, 60-69,
  70+); `missing` is the value that means "not recorded" (its own subgroup).
- shortcuts: non-image features that may predict the label without a pixel
  (the site or scanner a subset came from, age). The metadata-only baseline is
  fitted on them (`baselines.fit_metadata_logistic`), and each is also a
  confounder: inside each of its subgroups (strata) the model is compared
  with that baseline, where the shortcut is partly or wholly gone.

A dataset prepared before the declaration existed gets laterality and view,
which every mammo dataset has (`mammo_tfds.features.common`), and no shortcut.

A subgroup with fewer than MIN_PATIENTS_PER_CLASS patients in some class is
"too few to say": its counts are reported, its metrics are not. The intervals
resample patients; with fewer than 5 patients of a class, about one resample in
a hundred or more (for a subgroup of 20-30 patients) has none of that class, and
the few distinct values an AUC can take make a percentile interval meaningless.

A subgroup feature is reported at a level (image, breast, patient) only where
it is the same for every image of each unit of that level: view at image
level only, laterality up to breast level, age and subset at every level.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from mammo_train.evaluation import metrics

KEY = "subgroups"
FALLBACK = {"features": [{"name": "laterality"}, {"name": "view"}], "shortcuts": []}
MIN_PATIENTS_PER_CLASS = 5
MISSING = "missing"


class DeclarationError(ValueError):
  """The dataset's subgroup declaration does not fit its features."""


@dataclasses.dataclass(frozen=True)
class Feature:
  """One declared subgroup feature: a scalar, cut into bands when it is a number."""
  name: str
  bands: tuple = ()
  missing: float | None = None

  def band_names(self) -> list:
    edges = [int(edge) if float(edge).is_integer() else edge for edge in self.bands]
    whole = all(isinstance(edge, int) for edge in edges)
    names = [f"<{edges[0]}"]
    names += [f"{low}-{high - 1}" if whole else f"{low}-{high}" for low, high in zip(edges, edges[1:])]
    return names + [f"{edges[-1]}+"]

  def values(self, column) -> np.ndarray:
    """The subgroup name of each example."""
    column = np.asarray(column)
    if not self.bands:
      return column.astype(str)
    names = np.array(self.band_names() + [MISSING])
    codes = np.searchsorted(np.asarray(self.bands, dtype=float), column.astype(float), side="right")
    if self.missing is not None:
      codes = np.where(column.astype(float) == float(self.missing), len(names) - 1, codes)
    return names[codes]

  def order(self, values) -> list:
    """The subgroups present, in band order (then "missing") or sorted."""
    present = set(np.asarray(values).tolist())
    if self.bands:
      return [name for name in self.band_names() + [MISSING] if name in present]
    return sorted(present)


@dataclasses.dataclass(frozen=True)
class Declaration:
  features: tuple
  shortcuts: tuple
  source: str  # where it came from, for the report

  @property
  def columns(self) -> tuple:
    """Feature names `data.split_metadata` must return for the subgroups."""
    return tuple(feature.name for feature in self.features)

  def missing_values(self) -> dict:
    return {f.name: f.missing for f in self.features if f.missing is not None}

  def as_dict(self) -> dict:
    return {"features": [{key: value for key, value in dataclasses.asdict(f).items() if value not in ((), None)}
                         for f in self.features],
            "shortcuts": list(self.shortcuts), "source": self.source,
            "min_patients_per_class": MIN_PATIENTS_PER_CLASS}


def parse(stored: dict, source: str, feature_kinds: dict | None = None) -> Declaration:
  """A declaration from its stored dict, checked against the dataset's features.

  Args:
    stored: the "subgroups" entry of the dataset's metadata.
    source: where it was read from, named in every error.
    feature_kinds: feature name -> "number", "category" or "other" (not
      scalar); None skips the check against the dataset.
  """
  try:
    declared = [Feature(entry["name"], tuple(entry.get("bands", ())), entry.get("missing"))
                for entry in stored["features"]]
    shortcuts = tuple(stored.get("shortcuts", ()))
  except (KeyError, TypeError) as error:
    raise DeclarationError(f"{source}: malformed subgroup declaration ({error!r}): expected "
                           '{"features": [{"name": ...}, ...], "shortcuts": [...]}') from None
  names = [feature.name for feature in declared]
  for feature in declared:
    kind = None if feature_kinds is None else feature_kinds.get(feature.name)
    if feature_kinds is not None and kind is None:
      raise DeclarationError(f"{source}: subgroup feature {feature.name!r} is not a feature of the dataset "
                             f"(it has {', '.join(sorted(feature_kinds))})")
    if kind == "other":
      raise DeclarationError(f"{source}: subgroup feature {feature.name!r} is not a scalar")
    if feature.bands and (kind == "category" or list(feature.bands) != sorted(feature.bands)):
      raise DeclarationError(f"{source}: bands of {feature.name!r} need a number feature and increasing "
                             f"edges, got {list(feature.bands)}")
  unknown = [name for name in shortcuts if name not in names]
  if unknown:
    raise DeclarationError(f"{source}: shortcut(s) {', '.join(unknown)} must also be declared subgroup features")
  return Declaration(tuple(declared), shortcuts, source)


def _kind(feature) -> str:
  if isinstance(feature, (tfds.features.ClassLabel, tfds.features.Text)):
    return "category"
  if isinstance(feature, tfds.features.Tensor) and feature.shape == ():
    return "number" if np.issubdtype(np.dtype(feature.np_dtype), np.number) else "category"
  return "other"


def declared(builder) -> Declaration:
  """The subgroups a prepared dataset declares (its metadata.json), or the laterality / view fallback."""
  stored = dict(builder.info.metadata.items()) if builder.info.metadata is not None else {}
  if KEY not in stored:
    return parse(FALLBACK, f"{builder.info.full_name}: no declaration in its metadata.json (built before it "
                 "existed): laterality and view", None)
  kinds = {name: _kind(feature) for name, feature in builder.info.features.items()}
  return parse(stored[KEY], f"{builder.info.full_name} metadata.json in {builder.data_dir}", kinds)


def level_features(features: dict, index, inverse) -> dict:
  """Per-unit values of the features that are constant within every unit (see the module doc)."""
  result = {}
  for name, column in (features or {}).items():
    column = np.asarray(column)
    if np.array_equal(column, column[index][inverse]):
      result[name] = column[index]
  return result


def counts(labels, groups, class_names) -> dict:
  labels, groups = np.asarray(labels), np.asarray(groups)
  return {"n": int(len(labels)), "n_patients": int(len(np.unique(groups))),
          "per_class": {name: {"n": int(np.sum(labels == i)), "patients": int(len(np.unique(groups[labels == i])))}
                        for i, name in enumerate(class_names)}}


def too_few(counted: dict, min_patients: int = MIN_PATIENTS_PER_CLASS) -> bool:
  """Whether any class has fewer than `min_patients` patients: then no metric is reported."""
  return any(entry["patients"] < min_patients for entry in counted["per_class"].values())


def _cells(level, declaration: Declaration):
  """(feature, subgroup, mask) of every declared subgroup this level has, in declaration order."""
  for feature in declaration.features:
    if feature.name not in level.features:
      continue
    values = feature.values(level.features[feature.name])
    for value in feature.order(values):
      yield feature.name, value, values == value


def table(level, declaration: Declaration, class_names, n_resamples: int = 1000, seed: int = 0,
          min_patients: int = MIN_PATIENTS_PER_CLASS) -> list:
  """One row per subgroup: its counts, and `metrics.with_intervals` on its examples alone (or too few).

  `level` has labels, scores, decisions, groups (patient ids) and features
  (name -> per-unit values), as `assessment.Level`.
  """
  rows = []
  for name, value, mask in _cells(level, declaration):
    row = {"feature": name, "subgroup": value, **counts(level.labels[mask], level.groups[mask], class_names)}
    row["too_few"] = too_few(row, min_patients)
    row["metrics"] = None if row["too_few"] else metrics.with_intervals(
        level.labels[mask], level.scores[mask], level.decisions[mask], level.groups[mask], class_names,
        n_resamples, seed)
    rows.append(row)
  return rows


def within_strata(level, baseline, declaration: Declaration, class_names, n_resamples: int = 1000,
                  seed: int = 0, min_patients: int = MIN_PATIENTS_PER_CLASS) -> list:
  """The model against `baseline` (its (scores, decisions) on the same units) inside each shortcut stratum.

  Inside one subset, the subset cue is gone; inside one age band, most of the
  age cue is. The difference has a paired patient-bootstrap interval
  (`metrics.compare` on the stratum's units alone).
  """
  shortcuts = Declaration(tuple(f for f in declaration.features if f.name in declaration.shortcuts), (),
                          declaration.source)
  baseline_scores, baseline_decisions = (np.asarray(part) for part in baseline)
  rows = []
  for name, value, mask in _cells(level, shortcuts):
    row = {"feature": name, "subgroup": value, **counts(level.labels[mask], level.groups[mask], class_names)}
    row["too_few"] = too_few(row, min_patients)
    if not row["too_few"]:
      labels = level.labels[mask]
      model = (level.scores[mask], level.decisions[mask])
      other = (baseline_scores[mask], baseline_decisions[mask])
      row["model"] = metrics.headline(metrics.point_metrics(labels, *model, class_names))
      row["baseline"] = metrics.headline(metrics.point_metrics(labels, *other, class_names))
      row["comparison"] = metrics.compare(labels, level.groups[mask], model, other, class_names,
                                          n_resamples, seed)
    rows.append(row)
  return rows


def ranking_metric(class_names) -> str:
  return "roc_auc" if len(class_names) == 2 else "macro_roc_auc"


def weakest(rows: list, metric: str) -> dict | None:
  """The subgroup with the lowest `metric` among those with enough patients to say."""
  scored = [row for row in rows if not row["too_few"] and np.isfinite(row["metrics"].get(metric, np.nan))]
  if not scored:
    return None
  row = min(scored, key=lambda row: row["metrics"][metric])
  return {"feature": row["feature"], "subgroup": row["subgroup"], "n": row["n"], "n_patients": row["n_patients"],
          "metric": metric, "value": row["metrics"][metric], "ci": row["metrics"]["ci"][metric]}
