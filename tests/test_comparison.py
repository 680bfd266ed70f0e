"""Paired comparison statistics, each against an independent formulation or a case with a known answer."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from mammo_train.evaluation import comparison, metrics


def _delong_1988(labels, scores_a, scores_b):
  """DeLong, DeLong & Clarke-Pearson (1988) written plainly: O(m n) kernel psi, placement values V10 / V01,
  their covariance matrices S10 / S01, S = S10 / m + S01 / n."""
  labels = np.asarray(labels).astype(bool)
  placements10, placements01, aucs = [], [], []
  for scores in (scores_a, scores_b):
    x, y = np.asarray(scores)[labels], np.asarray(scores)[~labels]
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
    aucs.append(psi.mean())
    placements10.append(psi.mean(axis=1))
    placements01.append(psi.mean(axis=0))
  m, n = labels.sum(), (~labels).sum()
  s = np.cov(np.array(placements10)) / m + np.cov(np.array(placements01)) / n
  se = np.sqrt(s[0, 0] + s[1, 1] - 2 * s[0, 1])
  z = (aucs[0] - aucs[1]) / se
  return aucs, z, 2 * stats.norm.sf(abs(z))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_the_1988_formulation_with_ties(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 150)
  a = np.round(labels + rng.normal(size=150), 1)  # rounded: many ties, which midranks must handle
  b = np.round(0.5 * labels + rng.normal(size=150), 1)
  aucs, z, p = _delong_1988(labels, a, b)
  result = comparison.delong(labels, a, b)
  assert result["auc_a"] == pytest.approx(aucs[0]) and result["auc_b"] == pytest.approx(aucs[1])
  assert result["z"] == pytest.approx(z) and result["p"] == pytest.approx(p)
  assert result["auc_a"] == pytest.approx(metrics.point_metrics(labels, a, metrics.one_hot(a > 0, 2),
                                                                metrics.BINARY_NAMES)["roc_auc"])


def test_delong_identical_models_have_no_test():
  labels = np.tile([0, 1], 20)
  scores = np.linspace(0, 1, 40)
  result = comparison.delong(labels, scores, scores)
  assert result["difference"] == 0 and np.isnan(result["p"])


def test_mcnemar_exact_for_few_discordant_and_chi_square_for_many():
  labels = np.zeros(100, int)
  right, wrong = metrics.one_hot(np.zeros(100), 2), metrics.one_hot(np.ones(100), 2)
  a = right.copy()
  b = right.copy()
  b[:10] = wrong[:10]  # A right and B wrong on 10 units, never the other way
  exact = comparison.mcnemar(labels, a, b)
  assert exact["method"] == "exact binomial" and exact["only_a_right"] == 10 and exact["only_b_right"] == 0
  assert exact["p"] == pytest.approx(2 * 0.5 ** 10)
  b[:40] = wrong[:40]
  a[90:] = wrong[90:]
  large = comparison.mcnemar(labels, a, b)
  assert large["method"].startswith("chi-square")
  assert large["p"] == pytest.approx(stats.chi2.sf((abs(40 - 10) - 1) ** 2 / 50, 1))
  assert comparison.mcnemar(labels, a, a)["p"] == 1.0


def test_holm_adjustment():
  """Holm by hand: sorted p 0.01, 0.03, 0.04 times 3, 2, 1, made monotone; NaN left alone."""
  assert comparison.holm([0.04, 0.01, float("nan"), 0.03]) == pytest.approx([0.06, 0.03, float("nan"), 0.06],
                                                                           nan_ok=True)
  assert comparison.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_interval_resolves_a_real_difference_and_not_a_null_one():
  rng = np.random.default_rng(0)
  n = 600
  labels = rng.integers(0, 2, n)
  groups = np.repeat(np.arange(n // 2), 2).astype(str)  # two units per patient
  good = labels + rng.normal(scale=0.7, size=n)
  noisy = good + rng.normal(scale=1.5, size=n)
  resolved = comparison.auc_difference(labels, groups, good, noisy, 300, 0)
  assert resolved["difference"] > 0 and resolved["resolved"]
  same = comparison.auc_difference(labels, groups, good, good, 300, 0)
  assert same["difference"] == 0 and same["ci"] == [0, 0] and not same["resolved"]


def test_sensitivity_at_the_other_specificity():
  """B calls everything above 0.5: specificity 0.5 here; A separates perfectly, so at B's specificity A finds
  every malignant unit, and B only half of them."""
  labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  a = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
  b = np.array([0.1, 0.2, 0.7, 0.8, 0.3, 0.4, 0.9, 0.95])
  result = comparison.sensitivity_at_other_specificity(
      labels, np.arange(8).astype(str), (a, metrics.threshold_decisions(a, 0.5)),
      (b, metrics.threshold_decisions(b, 0.5)), 50, 0)
  assert result["other_specificity"] == 0.5 and result["sensitivity"] == 1.0 and result["difference"] == 0.5


def test_sensitivity_at_specificity_matches_scikit_learn_under_weights():
  """The vectorised weighted ROC search against scikit-learn's roc_curve with sample_weight, resample by
  resample."""
  from sklearn import metrics as skm
  rng = np.random.default_rng(3)
  labels = rng.integers(0, 2, 80)
  scores = np.round(labels + rng.normal(size=80), 1)
  weights = metrics.patient_resamples(np.arange(80).astype(str), 20, 1)
  targets = rng.uniform(0.3, 0.9, 20)
  found = comparison._sensitivity_at(labels, scores, targets, weights)
  for row, target in enumerate(targets):
    fpr, tpr, _ = skm.roc_curve(labels, scores, sample_weight=weights[row], drop_intermediate=False)
    assert found[row] == pytest.approx(tpr[(1 - fpr) >= target - 1e-12].max())


def _three_classes(n_patients, seed):
  """Two films per patient (MIAS-like), one class per patient; a model and a noisier copy of it."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(rng.integers(0, 3, n_patients), 2)
  groups = np.repeat([f"p{i}" for i in range(n_patients)], 2)
  logits = 1.5 * np.eye(3)[labels] + rng.normal(size=(len(labels), 3))
  noisy = logits + rng.normal(scale=1.5, size=logits.shape)
  return labels, groups, _softmax(logits), _softmax(noisy)


def _softmax(logits):
  return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_multi_class_auc_difference_is_scikit_learns_macro_one_vs_rest():
  labels, groups, good, noisy = _three_classes(150, 0)
  result = comparison.auc_difference(labels, groups, good, noisy, 200, 0)
  macro = [skm.roc_auc_score(labels, scores, multi_class="ovr", average="macro") for scores in (good, noisy)]
  assert result["difference"] == pytest.approx(macro[0] - macro[1]) and result["resolved"] and result["ci"][0] > 0
  for i, entry in enumerate(result["per_class"]):
    assert entry["difference"] == pytest.approx(skm.roc_auc_score(labels == i, good[:, i])
                                                - skm.roc_auc_score(labels == i, noisy[:, i]))
  assert result["difference"] == pytest.approx(np.mean([entry["difference"] for entry in result["per_class"]]))
  each = comparison.one_vs_rest_aucs(labels, groups, good, 200, 0)
  assert [entry["value"] for entry in each] == pytest.approx(
      skm.roc_auc_score(labels, good, multi_class="ovr", average=None))
  same = comparison.auc_difference(labels, groups, good, good, 200, 0)
  assert same["difference"] == 0 and same["ci"] == [0, 0] and not same["resolved"]


def test_the_paired_bootstrap_resamples_patients_and_their_images_move_together():
  """Each film copied four times under its patient: resampling patients draws the same patients with the same
  weights, so the interval is exactly the original's; resampling images (each copy its own unit) would
  narrow it, as four times the data would."""
  labels, groups, good, noisy = _three_classes(60, 1)
  original = comparison.auc_difference(labels, groups, good, noisy, 300, 0)
  copies = [np.repeat(values, 4, axis=0) for values in (labels, groups, good, noisy)]
  copied = comparison.auc_difference(*copies, 300, 0)
  assert copied["difference"] == pytest.approx(original["difference"])
  assert copied["ci"] == pytest.approx(original["ci"])
  for before, after in zip(original["per_class"], copied["per_class"]):
    assert after["ci"] == pytest.approx(before["ci"])
  as_images = comparison.auc_difference(copies[0], np.arange(len(copies[0])).astype(str), *copies[2:], 300, 0)
  assert np.diff(as_images["ci"])[0] < 0.7 * np.diff(original["ci"])[0]
