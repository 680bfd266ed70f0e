"""Calibration maps: Platt recovers what made the data, calibrating lowers the error, maps survive a save."""
import numpy as np
import pytest
from sklearn import metrics as skm

from mammo_train.evaluation import calibration, metrics


def _logits(n, slope, intercept, seed):
  rng = np.random.default_rng(seed)
  z = rng.normal(0, 2, n)
  labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-(slope * z + intercept)))).astype(int)
  return z, labels


def test_platt_recovers_known_parameters_from_synthetic_logits():
  z, labels = _logits(20000, slope=0.6, intercept=-1.2, seed=0)
  fitted = calibration.fit(labels, 1 / (1 + np.exp(-z)), method="platt")
  assert fitted.slope == pytest.approx(0.6, abs=0.03)
  assert fitted.intercept == pytest.approx(-1.2, abs=0.05)


def test_calibration_lowers_the_error_of_a_miscalibrated_score():
  """Scores of an oversampled model: the right ranking, far too high. Fit on one half, judge on the other."""
  z, labels = _logits(4000, slope=1.0, intercept=-1.5, seed=1)
  overconfident = 1 / (1 + np.exp(-(3 * z + 2)))
  fit_half, judge_half = slice(0, 2000), slice(2000, None)
  fitted = calibration.fit(labels[fit_half], overconfident[fit_half], method="platt")
  before = calibration.expected_calibration_error(labels[judge_half], overconfident[judge_half])[0]
  after = calibration.expected_calibration_error(labels[judge_half], fitted.apply(overconfident[judge_half]))[0]
  assert before > 0.15 and after < 0.05
  assert calibration.brier(labels[judge_half], fitted.apply(overconfident[judge_half]))[0] < calibration.brier(
      labels[judge_half], overconfident[judge_half])[0]
  calibrated = fitted.apply(overconfident[judge_half])
  assert skm.roc_auc_score(labels[judge_half], calibrated) == pytest.approx(
      skm.roc_auc_score(labels[judge_half], overconfident[judge_half]))
  judged = calibration.judge(labels[judge_half], overconfident[judge_half], calibrated,
                             np.arange(2000) // 2, n_resamples=100)
  assert judged["ece"]["difference_ci"][1] < 0 and judged["ece"]["after"] == pytest.approx(after)


def test_isotonic_only_for_a_large_validation_split():
  assert calibration.method_for(np.r_[np.zeros(500), np.ones(499)]) == "platt"
  assert calibration.method_for(np.r_[np.zeros(950), np.ones(99)]) == "platt"
  assert calibration.method_for(np.r_[np.zeros(900), np.ones(100)]) == "isotonic"
  z, labels = _logits(3000, slope=1.0, intercept=0.0, seed=2)
  scores = 1 / (1 + np.exp(-(2 * z)))
  fitted = calibration.fit(labels, scores)
  assert fitted.method == "isotonic"
  assert np.all(np.diff(fitted.apply(np.linspace(0, 1, 101))) >= 0)
  assert calibration.expected_calibration_error(labels, fitted.apply(scores))[0] < 0.02


def test_perfectly_separated_validation_gives_a_finite_map():
  fitted = calibration.fit([0, 0, 0, 1, 1, 1], [0.40, 0.41, 0.42, 0.43, 0.44, 0.45])
  probs = fitted.apply(np.array([0.0, 0.425, 1.0]))
  assert np.all(np.isfinite(probs)) and 0.05 < probs[1] < 0.95


def test_weighted_errors_equal_errors_on_repeated_examples():
  rng = np.random.default_rng(3)
  labels, probs = rng.integers(0, 2, 50), rng.uniform(size=50)
  weights = rng.integers(0, 4, size=(3, 50)).astype(float)
  for row in weights:
    repeated = np.repeat(np.arange(50), row.astype(int))
    assert calibration.expected_calibration_error(labels, probs, row)[0] == pytest.approx(
        calibration.expected_calibration_error(labels[repeated], probs[repeated])[0])
    assert calibration.brier(labels, probs, row)[0] == pytest.approx(
        skm.brier_score_loss(labels[repeated], probs[repeated]))
  resamples = metrics.patient_resamples(np.arange(50) // 5, 4, 0)
  assert calibration.brier(labels, probs, resamples).shape == (4,)


def test_maps_survive_save_and_load(tmp_path):
  z, labels = _logits(3000, 1.0, 0.0, seed=4)
  scores = 1 / (1 + np.exp(-z))
  maps = {"image": calibration.fit(labels, scores, "validation", method="platt"),
          "breast": calibration.fit(labels, scores, "validation", method="isotonic")}
  path = calibration.save(maps, tmp_path)
  loaded = calibration.load(path)
  assert loaded == maps
  for level in maps:
    np.testing.assert_allclose(loaded[level].apply(scores), maps[level].apply(scores))
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(ValueError, match="bad.json: not a calibration file"):
    calibration.load(tmp_path / "bad.json")
