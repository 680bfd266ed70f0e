"""One evaluation protocol for networks and baselines alike: predictions -> decisions -> metrics.

A classifier's predictions on a split become decisions at an operating
threshold chosen on the VALIDATION split (never on the split being scored),
are scored at image level and, for binary tasks, at breast level (a breast's
score is the mean of its views' scores) and patient level (a patient's score
is the highest of their breasts' scores, the rule screening competitions use;
every dataset here holds one exam per patient, so this is also the exam
level). Every level is scored per declared subgroup (`subgroups`); at image
and breast level the classifier is also compared with each baseline on the
very same examples and, inside each stratum of a declared shortcut, with the
metadata-only baseline.

A patient is called malignant when any of their breasts is: the patient
level thresholds the patient score at the breast threshold, so it needs no
threshold of its own. Classifiers that decide without a threshold (majority,
random guessing) keep the mean of their breasts' decisions.
"""
import collections
import dataclasses
import json
import pathlib

import numpy as np

from mammo_train.evaluation import metrics, subgroups

# How a classifier that decides without its scores (the majority and prior_random baselines) is described.
OWN_DECISIONS = "made by the classifier itself, without a threshold"
OPERATING_POINT = "operating_point.json"
DEFAULT_THRESHOLD = 0.5
# Levels with a threshold (and calibration map) of their own, and at which
# baselines are compared; the patient level uses the breast threshold.
THRESHOLD_LEVELS = ("image", "breast")
METADATA_BASELINE = "metadata_logistic"

# One level's units: labels, scores, decisions, patient ids, and the subgroup
# features that are constant within each unit (name -> per-unit values).
Level = collections.namedtuple("Level", "labels scores decisions groups features")


@dataclasses.dataclass
class Predictions:
  """A classifier's output on one split, in the order of `data.split_metadata`.

  Attributes:
    labels: true class per image.
    scores: P(malignant) [N] for a binary task, class probabilities [N, K] otherwise.
    patient_id, laterality: per image; the bootstrap unit and the breast id.
    decisions: [N, K] probability of outputting each class when the classifier
      decides by itself (majority, random guessing); None when its decisions
      come from its scores (threshold, or argmax for multi-class).
    features: per-image columns the subgroups are made of (name -> [N]
      values, e.g. view, age, subset), or None.
  """
  labels: np.ndarray
  scores: np.ndarray
  patient_id: np.ndarray
  laterality: np.ndarray
  decisions: np.ndarray | None = None
  features: dict | None = None

  def same_examples(self, other: "Predictions") -> bool:
    return (len(self.labels) == len(other.labels) and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.patient_id, other.patient_id)
            and np.array_equal(self.laterality, other.laterality))


@dataclasses.dataclass
class OperatingPoint:
  """Thresholds per level (binary tasks) and how they were obtained, for the report.

  `by_fold` (cross-validation's pooled out-of-fold predictions): fold -> its
  own thresholds per level, each chosen on that fold's validation part; a
  unit is then decided at its fold's threshold (its "fold" feature), and
  `thresholds` holds the folds' medians, for display only.
  """
  thresholds: dict
  how: str
  rule: str | None = None
  target_recall: float | None = None
  by_fold: dict | None = None

  def save(self, workdir) -> None:
    path = pathlib.Path(workdir) / OPERATING_POINT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

  @classmethod
  def read(cls, path) -> "OperatingPoint":
    """The operating point as it was saved (where it was chosen); a damaged file is an error naming it."""
    try:
      stored = json.loads(pathlib.Path(path).read_text())
      return cls(thresholds=stored["thresholds"], how=stored["how"], rule=stored.get("rule"),
                 target_recall=stored.get("target_recall"), by_fold=stored.get("by_fold"))
    except (OSError, ValueError, KeyError, TypeError) as error:
      raise ValueError(f"{path}: not an operating point ({error!r})") from None

  @classmethod
  def load(cls, path) -> "OperatingPoint":
    """The saved operating point, applied elsewhere: its `how` names the file it is taken from."""
    stored = cls.read(path)
    return dataclasses.replace(stored, how=f"taken from {path}, where it was {stored.how}")


def levels(predictions: Predictions, num_classes: int) -> dict:
  """Image level always; breast and patient levels too for binary tasks (CMMD labels breasts, not views)."""
  p = predictions
  features = {"laterality": np.asarray(p.laterality), **(p.features or {})}
  result = {"image": Level(p.labels, p.scores, p.decisions, p.patient_id, features)}
  if num_classes == 2:
    fixed = p.decisions if p.decisions is not None else np.zeros((len(p.labels), 2))
    labels, scores, decisions, groups = metrics.breast_level(p.labels, p.scores, fixed, p.patient_id,
                                                             p.laterality)
    index, inverse = metrics.units(metrics.breast_ids(p.patient_id, p.laterality))
    result["breast"] = Level(labels, scores, decisions if p.decisions is not None else None, groups,
                             subgroups.level_features(features, index, inverse))
    result["patient"] = _patient_level(result["breast"])
  return result


def _patient_level(breast: Level) -> Level:
  """Breasts pooled per patient: the highest score, malignant if any breast is, fixed decisions averaged."""
  index, inverse = metrics.units(breast.groups)
  labels = metrics.pool(breast.labels, inverse, "max").astype(np.asarray(breast.labels).dtype)
  return Level(labels, metrics.pool(breast.scores, inverse, "max"),
               None if breast.decisions is None else metrics.pool(breast.decisions, inverse),
               np.asarray(breast.groups)[index], subgroups.level_features(breast.features, index, inverse))


def choose_operating_point(validation: Predictions, split_name: str, rule: str = "recall",
                           target_recall: float = 0.95) -> OperatingPoint:
  """Thresholds chosen on validation predictions only, one per level."""
  thresholds = {name: metrics.choose_threshold(level.labels, level.scores, rule, target_recall)
                for name, level in levels(validation, 2).items() if name in THRESHOLD_LEVELS}
  how = (f"the highest threshold reaching malignant recall {target_recall:g}" if rule == "recall"
         else "the threshold maximising Youden's J (sensitivity + specificity - 1)")
  return OperatingPoint(thresholds, f"{how} on the {split_name} split, then applied unchanged", rule,
                        target_recall if rule == "recall" else None)


def _threshold(operating: OperatingPoint | None, level: str, units: Level | None = None):
  """The level's threshold; per unit (an array) when the operating point has one per fold."""
  if operating is None:
    return DEFAULT_THRESHOLD
  key = level if level in THRESHOLD_LEVELS else "breast"
  if operating.by_fold and units is not None:
    return np.array([operating.by_fold[str(fold)][key] for fold in units.features["fold"]], dtype=float)
  return operating.thresholds[key]


def decide(predictions: Predictions, num_classes: int, operating: OperatingPoint | None) -> dict:
  """Levels with their decisions filled in: fixed ones kept, else threshold (binary) or argmax."""
  result = {}
  for name, level in levels(predictions, num_classes).items():
    if level.decisions is None:
      if num_classes == 2:
        threshold = _threshold(operating, name, level)
        level = level._replace(decisions=metrics.threshold_decisions(level.scores, threshold))
      else:
        level = level._replace(decisions=metrics.one_hot(np.argmax(level.scores, axis=1), num_classes))
    result[name] = level
  return result


def dataset_entry(builder, split: str, predictions: Predictions, class_names) -> dict:
  """What was scored: the dataset's full name and version, the split, its counts."""
  return {"name": builder.info.full_name.rsplit("/", 1)[0], "version": str(builder.info.version), "split": split,
          "class_names": list(class_names), "counts": counts(predictions, class_names)}


def counts(predictions: Predictions, class_names) -> dict:
  result = {"images": int(len(predictions.labels)),
            "patients": int(len(np.unique(predictions.patient_id))),
            "per_class": {name: int(np.sum(predictions.labels == i)) for i, name in enumerate(class_names)}}
  if len(class_names) == 2:
    result["breasts"] = int(len(levels(predictions, 2)["breast"].labels))
  return result


def assess(target: Predictions, class_names, operating: OperatingPoint | None, *, baselines=None,
           n_bootstrap: int = 1000, seed: int = 0, declaration: subgroups.Declaration | None = None) -> tuple:
  """Scores a classifier, and compares it with each baseline, on the same examples.

  Args:
    target: the classifier's predictions on the split being scored.
    class_names: names of the label classes, in label order.
    operating: its thresholds (binary tasks; None for multi-class).
    baselines: name -> (Predictions on the same examples, OperatingPoint or
      None, one-line description). The one named METADATA_BASELINE, when
      given, is also compared with inside each shortcut stratum.
    n_bootstrap, seed: patient-level bootstrap resamples and their seed; the
      same resamples are used for every interval and comparison.
    declaration: the dataset's subgroups (`subgroups.declared`); None: the
      laterality / view fallback. Its features are read from `target.features`.

  Returns:
    (result, curves): result holds "threshold", "bootstrap", "levels",
    "baselines", "subgroups", "strata" and "verdict"; curves maps level ->
    (labels, scores) for the plots.
  """
  k = len(class_names)
  declaration = declaration or subgroups.parse(subgroups.FALLBACK, "fallback: laterality and view")
  decided = decide(target, k, operating)
  thresholded = k == 2 and target.decisions is None
  result = {
      "decisions": ("malignant when the score reaches the operating threshold" if thresholded
                    else "the most probable class (argmax)" if target.decisions is None
                    else OWN_DECISIONS),
      "threshold": None if not thresholded else {
          "values": {name: _threshold(operating, name) for name in decided if name in THRESHOLD_LEVELS},
          "how": operating.how if operating else f"no operating point was available: default {DEFAULT_THRESHOLD}",
          "rule": operating.rule if operating else None,
          "target_recall": operating.target_recall if operating else None,
          **({"by_fold": operating.by_fold} if operating and operating.by_fold else {})},
      "bootstrap": {"unit": "patient", "n_resamples": n_bootstrap, "seed": seed, "confidence": 0.95,
                    "method": "percentile"},
      "levels": {name: metrics.with_intervals(level.labels, level.scores, level.decisions, level.groups,
                                              class_names, n_bootstrap, seed)
                 for name, level in decided.items()},
      "baselines": {},
      "subgroups": {"declaration": declaration.as_dict(),
                    "levels": {name: subgroups.table(level, declaration, class_names, n_bootstrap, seed)
                               for name, level in decided.items()}},
      "strata": None,
  }
  for name, (predictions, baseline_operating, description) in (baselines or {}).items():
    if not predictions.same_examples(target):
      raise ValueError(f"baseline {name} was not predicted on the same examples in the same order")
    baseline_levels = decide(predictions, k, baseline_operating)
    compared = [level for level in decided if level in THRESHOLD_LEVELS]
    result["baselines"][name] = {
        "description": description,
        "levels": {level: metrics.headline(metrics.point_metrics(
            baseline_levels[level].labels, baseline_levels[level].scores, baseline_levels[level].decisions,
            class_names)) for level in compared},
        "comparison": {
            level: metrics.compare(decided[level].labels, decided[level].groups,
                                   (decided[level].scores, decided[level].decisions),
                                   (baseline_levels[level].scores, baseline_levels[level].decisions),
                                   class_names, n_bootstrap, seed)
            for level in compared},
    }
    if name == METADATA_BASELINE and declaration.shortcuts:
      result["strata"] = {
          "baseline": name, "shortcuts": list(declaration.shortcuts),
          "levels": {level: subgroups.within_strata(
              decided[level], (baseline_levels[level].scores, baseline_levels[level].decisions), declaration,
              class_names, n_bootstrap, seed) for level in compared}}
  result["verdict"] = verdict(result, class_names)
  curves = {name: (level.labels, level.scores) for name, level in decided.items()}
  return result, curves


def verdict_level(levels) -> str:
  """The level a verdict is said at: breast where there is one (binary tasks), else image (the only one)."""
  return "breast" if "breast" in levels else "image"


def verdict(result: dict, class_names) -> dict:
  """What the report says first: does the model beat the metadata-only baseline, overall and in each
  stratum, and which subgroup is weakest; at breast level for binary tasks (the level CMMD's labels are
  defined at; a MIAS breast is one film), image level otherwise."""
  level = verdict_level(result["levels"])
  metric = subgroups.ranking_metric(class_names)
  tables = result["subgroups"]["levels"]
  # The weakest subgroup at that level, or, where none there has enough patients, at the next level that has.
  weakest = next((dict(found, level=name) for name in [level] + [n for n in tables if n != level]
                  if (found := subgroups.weakest(tables[name], metric))), None)
  said = {"level": level, "metric": metric, "shortcuts": result["subgroups"]["declaration"]["shortcuts"],
          "weakest": weakest, "baseline": None}
  strata = result.get("strata")
  if strata:
    name = strata["baseline"]
    said["baseline"] = {
        "name": name, "description": result["baselines"][name]["description"],
        "shortcuts": strata["shortcuts"], "overall": result["baselines"][name]["comparison"][level][metric],
        "strata": [{"feature": row["feature"], "subgroup": row["subgroup"], "too_few": row["too_few"],
                    **({} if row["too_few"] else row["comparison"][metric])}
                   for row in strata["levels"][level]]}
  return said
