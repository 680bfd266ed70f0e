"""Classification metrics with patient-level bootstrap intervals (numpy + scikit-learn).

Every classifier here, a network or a baseline, is described by the same three
arrays per example: its label, its scores (P(malignant) for a binary task, a
[N, K] probability matrix otherwise: these give ROC / PR curves and AUCs) and
its decisions, a [N, K] matrix of the probability that it outputs each class.
A thresholded model's decisions are one-hot; a random-guessing baseline's are
its class prior, so its confusion matrix is the EXPECTED one, computed exactly
rather than from one sampled guess.

Point estimates come from scikit-learn. Bootstrap intervals resample PATIENTS,
not images: views and breasts of one patient are correlated, and resampling
images would make the intervals too narrow. A resample is a vector of integer
weights per image (how many times its patient was drawn), so every statistic
of every resample is computed at once from weighted counts; tests check the
weighted arithmetic against scikit-learn's `sample_weight`.
"""
import numpy as np
from sklearn import metrics as skm

BINARY_NAMES = ("benign", "malignant")
THRESHOLD_RULES = ("recall", "youden")


def one_hot(classes: np.ndarray, num_classes: int) -> np.ndarray:
  """Decisions of a deterministic classifier that outputs `classes`."""
  return np.eye(num_classes)[np.asarray(classes, dtype=int)]


def threshold_decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
  """Binary decisions: malignant when the score reaches the threshold (scikit-learn's convention)."""
  return one_hot(np.asarray(scores) >= threshold, 2)


def choose_threshold(labels: np.ndarray, scores: np.ndarray, rule: str = "recall",
                     target_recall: float = 0.95) -> float:
  """The operating threshold, chosen on validation data and then frozen.

  "recall": the highest threshold whose malignant recall reaches
  `target_recall` (screening wants few missed cancers; the highest such
  threshold keeps specificity as high as that allows). "youden": the
  threshold maximising sensitivity + specificity - 1.
  """
  if rule not in THRESHOLD_RULES:
    raise ValueError(f"threshold rule must be one of {THRESHOLD_RULES}, got {rule!r}")
  labels = np.asarray(labels)
  if labels.min() == labels.max():
    raise ValueError("choosing a threshold needs both classes in the validation labels")
  fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
  if rule == "recall":
    index = int(np.argmax(tpr >= target_recall))
  else:
    index = int(np.argmax(tpr - fpr))
  if np.isfinite(thresholds[index]):
    return float(thresholds[index])
  return float(np.nextafter(np.max(scores), np.inf))  # "above every score": nothing is called malignant


def units(ids) -> tuple:
  """(index, inverse) of the units `ids` name, ordered by id: each unit's first member, each member's unit."""
  _, index, inverse = np.unique(np.asarray(ids, dtype=str), return_index=True, return_inverse=True)
  return index, inverse


def pool(values, inverse, how: str = "mean") -> np.ndarray:
  """Per-unit mean or maximum of per-member `values` ([N] or [N, K]); `inverse` from `units`."""
  values = np.asarray(values, dtype=float)
  n_units = int(inverse.max()) + 1 if len(inverse) else 0
  if how == "max":
    pooled = np.full((n_units,) + values.shape[1:], -np.inf)
    np.maximum.at(pooled, inverse, values)
    return pooled
  sums = np.zeros((n_units,) + values.shape[1:])
  np.add.at(sums, inverse, values)
  counts = np.bincount(inverse, minlength=n_units).astype(float)
  return sums / counts.reshape((-1,) + (1,) * (values.ndim - 1))


def breast_ids(patient_ids, lateralities) -> np.ndarray:
  return np.char.add(np.char.add(np.asarray(patient_ids, dtype=str), "/"), np.asarray(lateralities, dtype=str))


def breast_level(labels, scores, decisions, patient_ids, lateralities):
  """Aggregates views to breasts: a breast's score and decision are the means of its views'.

  Returns (labels, scores, decisions, patient_ids) per breast, ordered by
  breast id (patient id + laterality). CMMD labels a breast, not a view, so
  this is the level its labels are defined at.
  """
  index, inverse = units(breast_ids(patient_ids, lateralities))
  labels = np.asarray(labels)
  if np.any(labels != labels[index][inverse]):
    raise ValueError("the views of a breast disagree on its label")
  _, scores, decisions = pool_breasts(patient_ids, lateralities, scores, decisions)
  return labels[index], scores, decisions, np.asarray(patient_ids)[index]


def pool_breasts(patient_ids, lateralities, *values) -> tuple:
  """(index, *pooled): each breast's mean of its views' `values` ([N] or [N, K] each), ordered by breast id
  (patient id + laterality); `index` is each breast's first view. The one rule for a breast's score,
  in evaluation and in prediction."""
  index, inverse = units(breast_ids(patient_ids, lateralities))
  return (index, *(pool(v, inverse) for v in values))


def _expanded(labels, decisions):
  """(y_true, y_pred, weight) rows whose weighted confusion matrix is the expected one."""
  n, k = decisions.shape
  return np.repeat(labels, k), np.tile(np.arange(k), n), decisions.ravel()


def _safe(function, *args, **kwargs) -> float:
  """A score that is undefined on this data (e.g. AUC with one class) is NaN, not an error."""
  try:
    return float(function(*args, **kwargs))
  except ValueError:
    return float("nan")


def point_metrics(labels, scores, decisions, class_names) -> dict:
  """Accuracy, balanced accuracy, per-class P/R/F1, AUCs and the confusion matrix.

  Binary tasks add PR-AUC (average precision), the probabilistic F1 and sensitivity / specificity
  at the decisions' operating point; multi-class tasks report the macro
  one-vs-rest ROC-AUC.
  """
  labels, scores, decisions = np.asarray(labels), np.asarray(scores), np.asarray(decisions, dtype=float)
  k = len(class_names)
  y_true, y_pred, weight = _expanded(labels, decisions)
  precision, recall, f1, support = skm.precision_recall_fscore_support(
      y_true, y_pred, labels=np.arange(k), sample_weight=weight, zero_division=np.nan)
  result = {
      "n": int(len(labels)),
      "accuracy": float(skm.accuracy_score(y_true, y_pred, sample_weight=weight)),
      "balanced_accuracy": _safe(skm.balanced_accuracy_score, y_true, y_pred, sample_weight=weight),
      "per_class": {
          name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                 "support": int(round(support[i]))}
          for i, name in enumerate(class_names)},
      "confusion_matrix": skm.confusion_matrix(
          y_true, y_pred, labels=np.arange(k), sample_weight=weight).tolist(),
  }
  if k == 2:
    result["roc_auc"] = _safe(skm.roc_auc_score, labels, scores)
    result["pr_auc"] = _safe(skm.average_precision_score, labels, scores)
    result["pf1"] = probabilistic_f1(labels, scores)
    result["sensitivity"] = float(recall[1])
    result["specificity"] = float(recall[0])
  else:
    result["macro_roc_auc"] = _safe(skm.roc_auc_score, labels, scores, multi_class="ovr",
                                    average="macro", labels=np.arange(k))
  return result


def patient_resamples(groups, n_resamples: int, seed: int) -> np.ndarray:
  """[n_resamples, N] image weights: how often each image's patient was drawn."""
  _, codes = np.unique(np.asarray(groups), return_inverse=True)
  n_groups = codes.max() + 1
  draws = np.random.default_rng(seed).integers(n_groups, size=(n_resamples, n_groups))
  offsets = (np.arange(n_resamples) * n_groups)[:, None]
  counts = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n_groups)
  return counts.reshape(n_resamples, n_groups)[:, codes].astype(float)


def _ratio(numerator, denominator):
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def weighted_roc_auc(labels, scores, weights) -> np.ndarray:
  """ROC-AUC of every row of `weights` [B, N] at once (ties count half), NaN if a class is absent."""
  order = np.argsort(scores, kind="stable")
  sorted_scores, positive = np.asarray(scores)[order], np.asarray(labels)[order].astype(bool)
  weights = np.atleast_2d(weights)[:, order]
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  pos = np.add.reduceat(weights * positive, starts, axis=1)
  neg = np.add.reduceat(weights * ~positive, starts, axis=1)
  neg_below = np.cumsum(neg, axis=1) - neg
  return _ratio((pos * (neg_below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))


def one_vs_rest_roc_aucs(labels, scores, weights) -> np.ndarray:
  """[K, B]: each class's one-vs-rest ROC-AUC (its probability column, that class against all others) under
  each row of `weights`; their mean over classes is the macro AUC, as scikit-learn's multi_class="ovr"."""
  labels, scores = np.asarray(labels), np.asarray(scores)
  return np.array([weighted_roc_auc(labels == i, scores[:, i], weights) for i in range(scores.shape[1])])


def weighted_average_precision(labels, scores, weights) -> np.ndarray:
  """Average precision (scikit-learn's step-wise PR-AUC) of every row of `weights` at once."""
  order = np.argsort(-np.asarray(scores), kind="stable")
  sorted_scores, positive = np.asarray(scores)[order], np.asarray(labels)[order].astype(bool)
  weights = np.atleast_2d(weights)[:, order]
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  true_pos = np.cumsum(np.add.reduceat(weights * positive, starts, axis=1), axis=1)
  false_pos = np.cumsum(np.add.reduceat(weights * ~positive, starts, axis=1), axis=1)
  precision = np.nan_to_num(_ratio(true_pos, true_pos + false_pos))
  recall = _ratio(true_pos, true_pos[:, -1:])
  recall_steps = np.diff(recall, axis=1, prepend=0.0)
  return (recall_steps * precision).sum(axis=1)


def probabilistic_f1(labels, scores, weights=None):
  """The probabilistic F1 (pF1) of the RSNA screening competition, optionally under rows of `weights` [B, N].

  Precision and recall with each example counted by its probability rather
  than by a thresholded decision: pTP = sum of P(positive) over positives,
  pFP = the sum over negatives, pPrecision = pTP / (pTP + pFP), pRecall =
  pTP / positives, pF1 their harmonic mean. It rewards confident correct
  scores, so it needs calibrated probabilities and depends on prevalence:
  report it beside ROC-AUC and PR-AUC, never alone. The unit is whatever
  `labels` and `scores` are given per: the competition scored one prediction
  per breast (patient, laterality), the evaluation's breast level (`breast_level`,
  the mean of a breast's views).

  Returns a float without `weights`, else a [B] array; NaN where there is no
  positive or no positive probability at all.
  """
  positive = np.asarray(labels).astype(bool)
  scores = np.asarray(scores, dtype=float)
  single = weights is None
  weights = np.ones((1, len(scores))) if single else np.atleast_2d(weights)
  true_pos = weights @ (scores * positive)
  false_pos = weights @ (scores * ~positive)
  precision = _ratio(true_pos, true_pos + false_pos)
  recall = _ratio(true_pos, weights @ positive.astype(float))
  f1 = _ratio(2 * precision * recall, precision + recall)
  return float(f1[0]) if single else f1


def resampled_metrics(labels, scores, decisions, weights, class_names) -> dict:
  """Each headline metric under each row of `weights`: name -> [B] array (NaN where undefined)."""
  labels, scores, decisions = np.asarray(labels), np.asarray(scores), np.asarray(decisions, dtype=float)
  k = len(class_names)
  outcome = (np.eye(k)[labels][:, :, None] * decisions[:, None, :]).reshape(len(labels), k * k)
  confusion = (weights @ outcome).reshape(-1, k, k)
  diagonal = np.diagonal(confusion, axis1=1, axis2=2)
  actual, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
  recall, precision = _ratio(diagonal, actual), _ratio(diagonal, predicted)
  result = {
      "accuracy": _ratio(diagonal.sum(axis=1), confusion.sum(axis=(1, 2))),
      "balanced_accuracy": np.nanmean(np.where(actual > 0, recall, np.nan), axis=1),
  }
  for i, name in enumerate(class_names):
    result[f"{name}_precision"] = precision[:, i]
    result[f"{name}_recall"] = recall[:, i]
    result[f"{name}_f1"] = _ratio(2 * diagonal[:, i], actual[:, i] + predicted[:, i])
  if k == 2:
    result["sensitivity"], result["specificity"] = recall[:, 1], recall[:, 0]
    result["roc_auc"] = weighted_roc_auc(labels, scores, weights)
    result["pr_auc"] = weighted_average_precision(labels, scores, weights)
    result["pf1"] = probabilistic_f1(labels, scores, weights)
  else:
    result["macro_roc_auc"] = one_vs_rest_roc_aucs(labels, scores, weights).mean(axis=0)
  return result


def headline(point: dict) -> dict:
  """The point metrics flattened to the names `resampled_metrics` uses."""
  flat = {name: point[name] for name in ("accuracy", "balanced_accuracy", "sensitivity", "specificity",
                                         "roc_auc", "pr_auc", "pf1", "macro_roc_auc") if name in point}
  for name, scores in point["per_class"].items():
    flat.update({f"{name}_{key}": scores[key] for key in ("precision", "recall", "f1")})
  return flat


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> list:
  """Percentile bootstrap interval; resamples where the metric is undefined are left out."""
  samples = np.asarray(samples)[np.isfinite(samples)]
  if samples.size == 0:
    return [float("nan"), float("nan")]
  tail = 100 * (1 - confidence) / 2
  return [float(v) for v in np.percentile(samples, [tail, 100 - tail])]


def with_intervals(labels, scores, decisions, groups, class_names, n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> dict:
  """Point metrics plus a patient-level bootstrap interval for each headline metric."""
  point = point_metrics(labels, scores, decisions, class_names)
  weights = patient_resamples(groups, n_resamples, seed)
  samples = resampled_metrics(labels, scores, decisions, weights, class_names)
  point["n_patients"] = int(len(np.unique(groups)))
  point["ci"] = {name: percentile_interval(samples[name], confidence) for name in headline(point)}
  return point


def compare(labels, groups, model, baseline, class_names, n_resamples: int = 1000, seed: int = 0,
            confidence: float = 0.95) -> dict:
  """Model minus baseline for each headline metric, with a paired patient-level bootstrap interval.

  `model` and `baseline` are (scores, decisions) on the same examples in the
  same order. Both are scored on the same resamples, so the interval is for
  the difference itself, which is much narrower than the two intervals side by
  side suggest. The model beats the baseline on a metric when the whole
  interval of the difference is above zero. `baseline_ci` is the baseline's
  own interval on those resamples, so its figure is never given bare.
  """
  weights = patient_resamples(groups, n_resamples, seed)
  point_model = headline(point_metrics(labels, *model, class_names))
  point_baseline = headline(point_metrics(labels, *baseline, class_names))
  samples_model = resampled_metrics(labels, *model, weights, class_names)
  samples_baseline = resampled_metrics(labels, *baseline, weights, class_names)
  result = {}
  for name in point_model:
    interval = percentile_interval(samples_model[name] - samples_baseline[name], confidence)
    result[name] = {"difference": point_model[name] - point_baseline[name], "ci": interval,
                    "beats": bool(interval[0] > 0),
                    "baseline_ci": percentile_interval(samples_baseline[name], confidence)}
  return result
