"""Metrics agree with scikit-learn, intervals cover, thresholds and breasts behave."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from mammo_train.evaluation import metrics

NAMES = metrics.BINARY_NAMES
DENSITY = ("fatty", "glandular", "dense")


def _binary_case(seed=0, n=80):
  rng = np.random.default_rng(seed)
  labels = rng.integers(2, size=n)
  scores = np.round(np.clip(0.3 * labels + rng.normal(0.35, 0.25, n), 0, 1), 1)  # rounded: ties
  return labels, scores


def test_binary_metrics_equal_sklearn():
  labels, scores = _binary_case()
  predicted = (scores >= 0.5).astype(int)
  result = metrics.point_metrics(labels, scores, metrics.threshold_decisions(scores, 0.5), NAMES)
  precision, recall, f1, _ = skm.precision_recall_fscore_support(labels, predicted)
  assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
  assert result["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, predicted))
  assert result["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores))
  assert result["pr_auc"] == pytest.approx(skm.average_precision_score(labels, scores))
  assert result["sensitivity"] == pytest.approx(recall[1])
  assert result["specificity"] == pytest.approx(recall[0])
  for i, name in enumerate(NAMES):
    assert result["per_class"][name]["precision"] == pytest.approx(precision[i])
    assert result["per_class"][name]["recall"] == pytest.approx(recall[i])
    assert result["per_class"][name]["f1"] == pytest.approx(f1[i])
  np.testing.assert_array_equal(result["confusion_matrix"], skm.confusion_matrix(labels, predicted))


def test_multiclass_metrics_equal_sklearn():
  rng = np.random.default_rng(1)
  labels = rng.integers(3, size=90)
  probs = rng.dirichlet(np.ones(3), size=90) + 0.5 * np.eye(3)[labels]
  probs /= probs.sum(axis=1, keepdims=True)
  predicted = probs.argmax(axis=1)
  result = metrics.point_metrics(labels, probs, metrics.one_hot(predicted, 3), DENSITY)
  assert result["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
  assert result["macro_roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
  _, _, f1, _ = skm.precision_recall_fscore_support(labels, predicted)
  assert [result["per_class"][n]["f1"] for n in DENSITY] == pytest.approx(f1)
  np.testing.assert_array_equal(result["confusion_matrix"], skm.confusion_matrix(labels, predicted))


def test_resampled_metrics_equal_sklearn_with_sample_weight():
  labels, scores = _binary_case(seed=2, n=40)
  weights = np.random.default_rng(3).integers(0, 4, size=(5, 40)).astype(float)
  decisions = metrics.threshold_decisions(scores, 0.5)
  resampled = metrics.resampled_metrics(labels, scores, decisions, weights, NAMES)
  for row, w in enumerate(weights):
    point = metrics.headline(metrics.point_metrics(np.repeat(labels, w.astype(int)),
                                                   np.repeat(scores, w.astype(int)),
                                                   np.repeat(decisions, w.astype(int), axis=0), NAMES))
    assert skm.roc_auc_score(labels, scores, sample_weight=w) == pytest.approx(point["roc_auc"])
    for name, value in point.items():
      assert resampled[name][row] == pytest.approx(value), name


def test_resampled_macro_auc_equals_sklearn():
  rng = np.random.default_rng(4)
  labels = np.tile(np.arange(3), 20)
  probs = rng.dirichlet(np.ones(3), size=60)
  weights = rng.integers(1, 3, size=(3, 60)).astype(float)
  resampled = metrics.resampled_metrics(labels, probs, metrics.one_hot(probs.argmax(1), 3), weights, DENSITY)
  for row, w in enumerate(weights):
    assert resampled["macro_roc_auc"][row] == pytest.approx(
        skm.roc_auc_score(labels, probs, multi_class="ovr", sample_weight=w))


def test_patient_resamples_move_a_patients_images_together():
  groups = np.array(["a", "a", "b", "c", "c", "c"])
  weights = metrics.patient_resamples(groups, n_resamples=50, seed=0)
  assert weights.shape == (50, 6)
  np.testing.assert_array_equal(weights[:, 0], weights[:, 1])
  np.testing.assert_array_equal(weights[:, 3], weights[:, 5])
  np.testing.assert_array_equal(weights[:, [0, 2, 3]].sum(axis=1), 3)  # 3 patients drawn each time
  np.testing.assert_array_equal(weights, metrics.patient_resamples(groups, 50, seed=0))


def test_patient_bootstrap_interval_covers_true_auc_at_nominal_rate():
  """Binormal scores with a shared per-patient effect: AUC = Phi(shift / sqrt(2 * total variance))."""
  rng = np.random.default_rng(5)
  n_patients, views, shift = 60, 2, 1.35
  true_auc = stats.norm.cdf(shift / np.sqrt(2 * (1.0 + 1.0)))
  patient_labels = np.repeat([0, 1], n_patients // 2)
  labels = np.repeat(patient_labels, views)
  groups = np.repeat(np.arange(n_patients), views)
  weights = metrics.patient_resamples(groups, n_resamples=200, seed=6)
  covered = 0
  for _ in range(200):
    scores = shift * labels + np.repeat(rng.normal(size=n_patients), views) + rng.normal(size=labels.size)
    low, high = metrics.percentile_interval(metrics.weighted_roc_auc(labels, scores, weights))
    covered += low <= true_auc <= high
  assert 0.88 <= covered / 200 <= 0.99


def test_recall_threshold_is_highest_reaching_target():
  labels = np.array([0, 0, 0, 1, 1, 1, 1])
  scores = np.array([0.1, 0.3, 0.6, 0.2, 0.5, 0.7, 0.9])
  assert metrics.choose_threshold(labels, scores, "recall", 0.75) == 0.5
  assert metrics.choose_threshold(labels, scores, "recall", 1.0) == 0.2
  assert metrics.choose_threshold(labels, scores, "youden") == 0.7  # J: 0.5 - 0 beats 0.5's 0.75 - 1/3


def test_breast_level_means_views():
  labels = np.array([1, 1, 0, 0, 1])
  scores = np.array([0.2, 0.8, 0.4, 0.6, 0.9])
  patients = np.array(["p1", "p1", "p1", "p1", "p2"])
  sides = np.array(["L", "L", "R", "R", "L"])
  decisions = metrics.threshold_decisions(scores, 0.5)
  b_labels, b_scores, b_decisions, b_patients = metrics.breast_level(labels, scores, decisions, patients, sides)
  np.testing.assert_array_equal(b_labels, [1, 0, 1])
  np.testing.assert_allclose(b_scores, [0.5, 0.5, 0.9])
  np.testing.assert_allclose(b_decisions, [[0.5, 0.5], [0.5, 0.5], [0, 1]])
  np.testing.assert_array_equal(b_patients, ["p1", "p1", "p2"])
  with pytest.raises(ValueError, match="disagree"):
    metrics.breast_level([1, 0], [0.1, 0.2], decisions[:2], ["p", "p"], ["L", "L"])


def test_expected_confusion_of_random_guessing():
  labels = np.array([0] * 25 + [1] * 75)
  prior = np.tile([0.25, 0.75], (100, 1))
  result = metrics.point_metrics(labels, np.full(100, 0.75), prior, NAMES)
  assert result["accuracy"] == pytest.approx(0.25**2 + 0.75**2)
  assert result["roc_auc"] == 0.5
  assert result["sensitivity"] == pytest.approx(0.75)
  np.testing.assert_allclose(result["confusion_matrix"], [[6.25, 18.75], [18.75, 56.25]])


def test_compare_is_paired():
  labels, scores = _binary_case(seed=7, n=120)
  groups = np.arange(120) // 2
  model = (scores, metrics.threshold_decisions(scores, 0.5))
  constant = (np.full(120, 0.5), metrics.one_hot(np.ones(120, int), 2))
  against_itself = metrics.compare(labels, groups, model, model, NAMES, n_resamples=100)
  own = metrics.with_intervals(labels, scores, model[1], groups, NAMES, n_resamples=100)["ci"]["roc_auc"]
  assert against_itself["roc_auc"] == {"difference": 0.0, "ci": [0.0, 0.0], "beats": False, "baseline_ci": own}
  against_constant = metrics.compare(labels, groups, model, constant, NAMES, n_resamples=100)
  assert against_constant["roc_auc"]["beats"]
  # A constant scorer's AUC is 0.5 on every resample: its own interval says so.
  assert against_constant["roc_auc"]["baseline_ci"] == [0.5, 0.5]
  assert against_constant["roc_auc"]["difference"] == pytest.approx(skm.roc_auc_score(labels, scores) - 0.5)


def test_probabilistic_f1_by_hand_and_under_resampling():
  """pTP = 0.9 + 0.4, pFP = 0.2 + 0.5; precision 1.3 / 2.0, recall 1.3 / 2: pF1 = 0.65."""
  labels, scores = np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.2, 0.5])
  assert metrics.probabilistic_f1(labels, scores) == pytest.approx(0.65)
  # A perfect but unconfident model has AUC 1 and a poor pF1; thresholded F1 would not tell them apart.
  assert metrics.probabilistic_f1(labels, np.array([0.3, 0.3, 0.1, 0.1])) == pytest.approx(2 * 0.75 * 0.3 / 1.05)
  assert np.isnan(metrics.probabilistic_f1([0, 0], [0.2, 0.4]))
  # A weight counts an example that many times.
  weights = np.array([[2, 1, 0, 1], [1, 1, 1, 1]])
  repeated = metrics.probabilistic_f1([1, 1, 1, 0], [0.9, 0.9, 0.4, 0.5])
  np.testing.assert_allclose(metrics.probabilistic_f1(labels, scores, weights), [repeated, 0.65])


def test_binary_reports_carry_pf1_with_a_patient_interval():
  labels, scores = _binary_case(seed=3, n=100)
  result = metrics.with_intervals(labels, scores, metrics.threshold_decisions(scores, 0.5), np.arange(100) // 2,
                                  NAMES, n_resamples=200)
  assert result["pf1"] == pytest.approx(metrics.probabilistic_f1(labels, scores))
  low, high = result["ci"]["pf1"]
  assert low < result["pf1"] < high
