"""Turning a binary classifier's scores into probabilities, fitted on validation, checked on test.

A class-weighted or oversampled model's scores are not probabilities: trained
on a balanced stream, it over-calls the minority class. A calibration map is
fitted on the VALIDATION split's scores (never on the split it is judged on),
one per level (image, and breast: the mean of a breast's views), kept with
the run as `calibration.json`, and judged on the test split by expected
calibration error and Brier score, before and after, with patient-bootstrap
intervals.

- Platt scaling (default): P = sigmoid(slope * logit(score) + intercept),
  fitted by logistic regression on the logit of the score, with Platt's
  smoothed targets ((N+ + 1) / (N+ + 2) for a malignant example, 1 / (N- + 2)
  for a benign one) so that a validation split the scores separate perfectly
  gives a finite map rather than a step. Two parameters: stable on a few
  hundred examples, and monotone (for a positive slope), so ranking metrics
  (AUC) are unchanged.
- Isotonic regression: a non-decreasing step map, only when the validation
  level has at least ISOTONIC_MIN_EXAMPLES examples and ISOTONIC_MIN_PER_CLASS
  of each class. It has as many free steps as the data allow and overfits
  small sets (scikit-learn's calibration guide warns below about 1,000); CMMD's
  validation split (about 560 images, 280 breasts) gets Platt.

The expected calibration error uses ECE_BINS equal-width bins of the
probability: the sum over bins of (share of examples in the bin) x |mean
probability - fraction malignant|.
"""
import dataclasses
import json
import pathlib

import numpy as np
from sklearn import isotonic, linear_model

from mammo_train.evaluation import metrics

CALIBRATION = "calibration.json"
ISOTONIC_MIN_EXAMPLES = 1000
ISOTONIC_MIN_PER_CLASS = 100
ECE_BINS = 10
RULE = (f"Platt scaling, isotonic regression when a level has at least {ISOTONIC_MIN_EXAMPLES} validation "
        f"examples and {ISOTONIC_MIN_PER_CLASS} of each class")
_EPSILON = 1e-7


def logit(scores) -> np.ndarray:
  scores = np.clip(np.asarray(scores, dtype=float), _EPSILON, 1 - _EPSILON)
  return np.log(scores) - np.log1p(-scores)


@dataclasses.dataclass
class Calibration:
  """One level's map. Platt: slope, intercept. Isotonic: the step map's knots (x, y), interpolated."""
  method: str
  slope: float | None = None
  intercept: float | None = None
  x: list | None = None
  y: list | None = None
  fitted_on: str = ""

  def apply(self, scores) -> np.ndarray:
    """Calibrated P(malignant) of raw scores."""
    if self.method == "platt":
      return 1 / (1 + np.exp(-(self.slope * logit(scores) + self.intercept)))
    return np.interp(np.asarray(scores, dtype=float), self.x, self.y)  # what IsotonicRegression.predict does


def method_for(labels) -> str:
  """The documented rule: isotonic only for a large validation set with enough of each class."""
  labels = np.asarray(labels)
  smaller_class = min(np.sum(labels == 0), np.sum(labels == 1))
  large = len(labels) >= ISOTONIC_MIN_EXAMPLES and smaller_class >= ISOTONIC_MIN_PER_CLASS
  return "isotonic" if large else "platt"


def fit(labels, scores, fitted_on: str = "", method: str | None = None) -> Calibration:
  """A calibration map from validation labels and raw scores (method: `method_for` unless given)."""
  labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=float)
  if labels.min() == labels.max():
    raise ValueError("fitting a calibration map needs both classes in the validation labels")
  method = method or method_for(labels)
  if method == "platt":
    positives, negatives = np.sum(labels == 1), np.sum(labels == 0)
    targets = np.where(labels == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    # Soft targets as weights: each example once as malignant (weight t), once as benign (1 - t).
    features = np.tile(logit(scores), 2)[:, None]
    outcomes = np.r_[np.ones(len(labels), int), np.zeros(len(labels), int)]
    model = linear_model.LogisticRegression(C=np.inf).fit(features, outcomes,
                                                          sample_weight=np.r_[targets, 1 - targets])
    return Calibration("platt", slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]),
                       fitted_on=fitted_on)
  if method != "isotonic":
    raise ValueError(f"calibration method must be platt or isotonic, got {method!r}")
  model = isotonic.IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
  return Calibration("isotonic", x=model.X_thresholds_.tolist(), y=model.y_thresholds_.tolist(),
                     fitted_on=fitted_on)


def save(maps: dict, workdir) -> pathlib.Path:
  """Writes level -> Calibration as workdir/calibration.json."""
  path = pathlib.Path(workdir) / CALIBRATION
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({level: dataclasses.asdict(m) for level, m in maps.items()}, indent=2) + "\n")
  return path


def load(path) -> dict:
  """level -> Calibration from a calibration.json; a damaged file is an error naming it."""
  try:
    stored = json.loads(pathlib.Path(path).read_text())
    return {level: Calibration(**entry) for level, entry in stored.items()}
  except (OSError, ValueError, TypeError) as error:
    raise ValueError(f"{path}: not a calibration file ({error})") from None


def expected_calibration_error(labels, probs, weights=None, bins: int = ECE_BINS) -> np.ndarray:
  """ECE under each row of `weights` [B, N] (one row of ones when None): [B]."""
  labels, probs = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
  weights = np.ones((1, len(labels))) if weights is None else np.atleast_2d(weights)
  which = np.clip((probs * bins).astype(int), 0, bins - 1)
  members = np.eye(bins)[which]  # [N, bins]
  count = weights @ members
  gap = np.abs(weights @ (members * probs[:, None]) - weights @ (members * labels[:, None]))
  return gap.sum(axis=1) / count.sum(axis=1)  # sum_b (n_b / N) |mean p_b - mean y_b| = sum_b |sum p - sum y| / N


def brier(labels, probs, weights=None) -> np.ndarray:
  """Brier score (mean squared error of the probability) under each row of `weights`: [B]."""
  errors = (np.asarray(probs, dtype=float) - np.asarray(labels, dtype=float)) ** 2
  weights = np.ones((1, len(errors))) if weights is None else np.atleast_2d(weights)
  return (weights @ errors) / weights.sum(axis=1)


def slope_and_intercept(labels, probs, weights=None) -> np.ndarray:
  """Calibration slope and intercept (Cox 1958) under each row of `weights`: [B, 2].

  The logistic regression of the outcome on logit(probability): slope 1 and
  intercept 0 for calibrated probabilities; slope below 1 means too extreme
  (overfitted) scores. A resample with one class only gives NaN.
  """
  labels = np.asarray(labels).astype(int)
  features = logit(probs)[:, None]
  weights = np.ones((1, len(labels))) if weights is None else np.atleast_2d(weights)
  result = np.full((len(weights), 2), np.nan)
  for row, weight in enumerate(weights):
    drawn = weight > 0
    if len(np.unique(labels[drawn])) < 2:
      continue
    model = linear_model.LogisticRegression(C=np.inf).fit(features[drawn], labels[drawn], sample_weight=weight[drawn])
    result[row] = model.coef_[0, 0], model.intercept_[0]
  return result


def reliability(labels, probs, bins: int = ECE_BINS) -> dict:
  """Per bin: mean probability, fraction malignant and count (empty bins left out), for the diagram."""
  labels, probs = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
  which = np.clip((probs * bins).astype(int), 0, bins - 1)
  count = np.bincount(which, minlength=bins)
  present = count > 0
  mean_prob = np.bincount(which, probs, minlength=bins)[present] / count[present]
  positive = np.bincount(which, labels, minlength=bins)[present] / count[present]
  return {"mean_probability": mean_prob.tolist(), "fraction_malignant": positive.tolist(),
          "count": count[present].tolist()}


def judge(labels, raw, calibrated, groups, n_resamples: int = 1000, seed: int = 0,
          confidence: float = 0.95) -> dict:
  """ECE and Brier score before and after calibration, and after minus before, with patient-bootstrap
  intervals (the same resamples for all, so the difference's interval is paired)."""
  weights = metrics.patient_resamples(groups, n_resamples, seed)
  result = {}
  for name, measure in (("ece", expected_calibration_error), ("brier", brier)):
    before, after = measure(labels, raw)[0], measure(labels, calibrated)[0]
    samples_before, samples_after = measure(labels, raw, weights), measure(labels, calibrated, weights)
    result[name] = {
        "before": float(before), "before_ci": metrics.percentile_interval(samples_before, confidence),
        "after": float(after), "after_ci": metrics.percentile_interval(samples_after, confidence),
        "difference": float(after - before),
        "difference_ci": metrics.percentile_interval(samples_after - samples_before, confidence)}
  result["reliability"] = {"before": reliability(labels, raw), "after": reliability(labels, calibrated)}
  return result


def judge_levels(levels: dict, maps: dict, how: str, n_resamples: int = 1000, seed: int = 0) -> dict:
  """`judge` at each level that has a map; `levels` as `assessment.levels` returns them (scored split)."""
  return {"how": how, "bins": ECE_BINS, "levels": {
      name: {"map": dataclasses.asdict(maps[name]),
             **judge(levels[name].labels, levels[name].scores, maps[name].apply(levels[name].scores),
                     levels[name].groups, n_resamples, seed)}
      for name in maps if name in levels}}
