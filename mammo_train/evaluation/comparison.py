"""Is model A better than model B on the same examples, and how sure are we? Paired tests only.

Two models scored on one test split share its examples, so their errors are
correlated; comparing their two intervals side by side wastes that (and
usually says "overlap, can't tell"). Every statistic here is paired:

- The AUC difference with a paired patient bootstrap: both models scored on
  the same resamples of PATIENTS (`metrics.patient_resamples`), so the
  interval respects the clustering of a patient's images. This interval
  decides whether a difference is resolved. Binary tasks: the ROC-AUC of
  P(malignant); multi-class tasks: the macro one-vs-rest ROC-AUC (the mean of
  each class's AUC against all others, the evaluation's `macro_roc_auc`),
  and each class's one-vs-rest difference beside it.
- McNemar's test on which units each model decides right (its own operating
  point, or argmax for multi-class; valid for any number of classes):
  exact binomial when there are fewer than MCNEMAR_EXACT_BELOW discordant
  units, the continuity-corrected chi-square otherwise.
- Binary tasks only, since both need one ROC curve per model: DeLong's test
  for two correlated ROC curves (DeLong, DeLong & Clarke-Pearson 1988),
  computed with Sun & Xu's (2014) midrank algorithm in O(N log N), which
  treats the units as independent (exact at patient level, optimistic at
  image and breast level where one patient gives several units); and the
  sensitivity of one model at the other's specificity (on the scored data),
  with a paired interval. Neither has a standard multi-class form: they are
  not computed there (BINARY_ONLY says so in the results).
- With more than two models, Holm's step-down adjustment of each family of
  p-values (one family per test and level).
"""
import itertools

import numpy as np
from scipy import stats

from mammo_train.evaluation import metrics

MCNEMAR_EXACT_BELOW = 25  # discordant pairs; below this the chi-square approximation is poor
P_VALUE_TESTS = ("delong", "mcnemar")  # each a family for Holm's adjustment
BINARY_ONLY = ("DeLong's test and the sensitivity at the other's specificity compare two binary ROC curves; "
               "with more than two classes they are not computed, and the paired patient bootstrap of the macro "
               "one-vs-rest AUC difference decides")


def delong(labels, scores_a, scores_b) -> dict:
  """DeLong's test of AUC(a) = AUC(b) on the same units (Sun & Xu's fast algorithm).

  Returns auc_a, auc_b, difference (a - b), its standard error, z and the
  two-sided p-value (all NaN when a class has fewer than two units; p NaN
  when the variance is zero, e.g. identical scores).
  """
  labels = np.asarray(labels).astype(bool)
  positives = np.stack([np.asarray(scores_a, float)[labels], np.asarray(scores_b, float)[labels]])
  negatives = np.stack([np.asarray(scores_a, float)[~labels], np.asarray(scores_b, float)[~labels]])
  m, n = positives.shape[1], negatives.shape[1]
  if m < 2 or n < 2:  # no AUC without both classes; no variance from a single unit of a class
    nan = float("nan")
    return {"auc_a": nan, "auc_b": nan, "difference": nan, "se": nan, "z": nan, "p": nan}
  combined = np.concatenate([positives, negatives], axis=1)
  rank_x = stats.rankdata(positives, axis=1)
  rank_y = stats.rankdata(negatives, axis=1)
  rank_z = stats.rankdata(combined, axis=1)
  aucs = (rank_z[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
  v01 = (rank_z[:, :m] - rank_x) / n  # each positive's share of negatives below it (placement value)
  v10 = 1 - (rank_z[:, m:] - rank_y) / m  # each negative's share of positives above it
  covariance = np.cov(v01) / m + np.cov(v10) / n
  variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
  difference = float(aucs[0] - aucs[1])
  se = float(np.sqrt(variance)) if variance > 0 else 0.0
  z = difference / se if se > 0 else float("nan")
  return {"auc_a": float(aucs[0]), "auc_b": float(aucs[1]), "difference": difference, "se": se, "z": z,
          "p": float(2 * stats.norm.sf(abs(z))) if se > 0 else float("nan")}


def _sensitivity_at(labels, scores, specificity, weights) -> np.ndarray:
  """Under each row of `weights` [B, N]: the highest sensitivity of `scores` at a threshold whose
  specificity reaches that row's `specificity` [B] (NaN where a class is absent)."""
  order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
  sorted_scores, positive = np.asarray(scores, dtype=float)[order], np.asarray(labels)[order] == 1
  weights = np.atleast_2d(weights)[:, order]
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  true_pos = np.cumsum(np.add.reduceat(weights * positive, starts, axis=1), axis=1)
  false_pos = np.cumsum(np.add.reduceat(weights * ~positive, starts, axis=1), axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    sensitivity = true_pos / true_pos[:, -1:]
    reached = 1 - false_pos / false_pos[:, -1:] >= np.asarray(specificity)[:, None] - 1e-12
    # A threshold above every score (nothing called malignant) reaches any specificity: sensitivity 0.
    best = np.where(reached, sensitivity, 0.0).max(axis=1)
  return np.where(np.isfinite(sensitivity[:, -1]) & np.isfinite(specificity), best, np.nan)


def _rate(labels, decisions, weights, label: int) -> np.ndarray:
  """Under each row of `weights`: the share of units of class `label` that one-hot `decisions` get right."""
  members = np.asarray(labels) == label
  with np.errstate(invalid="ignore", divide="ignore"):
    return (weights @ (members * np.asarray(decisions)[:, label])) / (weights @ members)


def sensitivity_at_other_specificity(labels, groups, model, other, n_resamples: int = 1000, seed: int = 0,
                                     confidence: float = 0.95) -> dict:
  """Sensitivity of `model` where `other` operates, minus `other`'s own sensitivity, with a paired interval.

  `model` and `other` are (scores, one-hot decisions) on the same units.
  `other`'s specificity is that of its decisions on these units (in each
  resample, on the resample); `model` takes its best threshold reaching it.
  """
  weights = _point_and_resamples(groups, n_resamples, seed)
  specificity = _rate(labels, other[1], weights, 0)
  sensitivity = _sensitivity_at(labels, model[0], specificity, weights)
  difference = sensitivity - _rate(labels, other[1], weights, 1)
  return {"other_specificity": float(specificity[0]), "sensitivity": float(sensitivity[0]),
          "difference": float(difference[0]), "ci": metrics.percentile_interval(difference[1:], confidence)}


def _point_and_resamples(groups, n_resamples: int, seed: int) -> np.ndarray:
  """[1 + n_resamples, N] unit weights: the data as it is (all ones), then `metrics.patient_resamples`."""
  return np.vstack([np.ones(len(groups)), metrics.patient_resamples(groups, n_resamples, seed)])


def _estimate(samples, confidence: float) -> dict:
  """A statistic under `_point_and_resamples` [1 + B]: its value and percentile interval."""
  return {"value": float(samples[0]), "ci": metrics.percentile_interval(samples[1:], confidence)}


def _difference(samples_a, samples_b, confidence: float) -> dict:
  """a - b under the same `_point_and_resamples` rows; resolved when the paired interval excludes 0."""
  estimate = _estimate(np.asarray(samples_a) - np.asarray(samples_b), confidence)
  interval = estimate["ci"]
  return {"difference": estimate["value"], "ci": interval, "resolved": bool(interval[0] > 0 or interval[1] < 0)}


def one_vs_rest_aucs(labels, groups, scores, n_resamples: int = 1000, seed: int = 0,
                     confidence: float = 0.95) -> list:
  """Each class's one-vs-rest ROC-AUC ([N, K] scores), in class order, with its patient-bootstrap interval."""
  weights = _point_and_resamples(groups, n_resamples, seed)
  return [_estimate(samples, confidence) for samples in metrics.one_vs_rest_roc_aucs(labels, scores, weights)]


def auc_difference(labels, groups, scores_a, scores_b, n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> dict:
  """AUC(a) - AUC(b) with a paired patient-bootstrap interval; resolved when the interval excludes 0.

  Binary scores [N]: the ROC-AUC. Class probabilities [N, K]: the macro
  one-vs-rest ROC-AUC, plus "per_class", each class's one-vs-rest difference
  (class order), from the same resamples.
  """
  weights = _point_and_resamples(groups, n_resamples, seed)
  if np.ndim(scores_a) == 1:
    return _difference(metrics.weighted_roc_auc(labels, scores_a, weights),
                       metrics.weighted_roc_auc(labels, scores_b, weights), confidence)
  per_class_a = metrics.one_vs_rest_roc_aucs(labels, scores_a, weights)
  per_class_b = metrics.one_vs_rest_roc_aucs(labels, scores_b, weights)
  return {**_difference(per_class_a.mean(axis=0), per_class_b.mean(axis=0), confidence),
          "per_class": [_difference(a, b, confidence) for a, b in zip(per_class_a, per_class_b)]}


def mcnemar(labels, decisions_a, decisions_b) -> dict:
  """McNemar's test on which units each model decides correctly (one-hot decisions)."""
  labels = np.asarray(labels)
  right_a = np.argmax(decisions_a, axis=1) == labels
  right_b = np.argmax(decisions_b, axis=1) == labels
  only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
  discordant = only_a + only_b
  if discordant == 0:
    return {"only_a_right": 0, "only_b_right": 0, "method": "no discordant units", "p": 1.0}
  if discordant < MCNEMAR_EXACT_BELOW:
    return {"only_a_right": only_a, "only_b_right": only_b, "method": "exact binomial",
            "p": float(stats.binomtest(only_a, discordant, 0.5).pvalue)}
  statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
  return {"only_a_right": only_a, "only_b_right": only_b, "method": "chi-square, continuity-corrected",
          "p": float(stats.chi2.sf(statistic, 1))}


def holm(p_values) -> list:
  """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and is not counted)."""
  p = np.asarray(p_values, dtype=float)
  finite = np.flatnonzero(np.isfinite(p))
  order = finite[np.argsort(p[finite], kind="stable")]
  adjusted = np.full(len(p), np.nan)
  running = 0.0
  for rank, index in enumerate(order):
    running = max(running, min(1.0, (len(order) - rank) * p[index]))
    adjusted[index] = running
  return adjusted.tolist()


def compare_pair(level, model_a, model_b, n_resamples: int = 1000, seed: int = 0) -> dict:
  """Every paired statistic of two models on one level's units (the binary-only ones for binary scores).

  `level` is (labels, groups); each model is (scores, one-hot decisions) on
  those units in the same order; scores are [N] (binary) or [N, K].
  """
  labels, groups = level
  result = {"auc_difference": auc_difference(labels, groups, model_a[0], model_b[0], n_resamples, seed),
            "mcnemar": mcnemar(labels, model_a[1], model_b[1])}
  if np.ndim(model_a[0]) == 1:
    result.update(
        delong=delong(labels, model_a[0], model_b[0]),
        a_at_b_specificity=sensitivity_at_other_specificity(labels, groups, model_a, model_b, n_resamples, seed),
        b_at_a_specificity=sensitivity_at_other_specificity(labels, groups, model_b, model_a, n_resamples, seed))
  return result


def compare_all(levels: dict, models: dict, n_resamples: int = 1000, seed: int = 0) -> list:
  """Every pair of `models`, at every level, with Holm-adjusted p-values when there are more than two.

  Args:
    levels: level name -> (labels, groups).
    models: model name -> level name -> (scores, one-hot decisions).

  Returns:
    [{"a", "b", "levels": {level: compare_pair(...) + adjusted p-values}}].
  """
  pairs = [{"a": a, "b": b, "levels": {
      name: compare_pair(level, models[a][name], models[b][name], n_resamples, seed)
      for name, level in levels.items()}} for a, b in itertools.combinations(models, 2)]
  for name in levels:
    for test in P_VALUE_TESTS:
      entries = [pair["levels"][name][test] for pair in pairs if test in pair["levels"][name]]
      adjusted = holm([entry["p"] for entry in entries]) if len(models) > 2 else [e["p"] for e in entries]
      for entry, value in zip(entries, adjusted):
        entry["p_holm"] = value
  return pairs
