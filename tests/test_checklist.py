"""The reporting checklist: its leakage check fails visibly on a planted leak; calibration slope / intercept."""
import numpy as np
import pytest

from mammo_train import calibration
from mammo_train.evaluation import checklist


def _clean():
  patients = {"train": ["A", "A", "B"], "validation": ["C"], "test": ["D", "E"]}
  digests = {"train": ["a1", "a2", "b1"], "validation": ["c1"], "test": ["d1", "e1"]}
  return patients, digests


def test_clean_splits_pass():
  check = checklist.leakage(*_clean())
  assert check["passed"]
  assert check["per_split"]["train"] == {"patients": 2, "images": 3, "duplicate_images": 0}
  lines = "\n".join(checklist.section([checklist.Item("21", "leakage", checklist.leakage_text(check))], check))
  assert "FAILED" not in lines and "no patient and no identical image in two splits" in lines


@pytest.mark.parametrize("plant", ["patient", "pixels"])
def test_a_planted_leak_fails_visibly(plant):
  patients, digests = _clean()
  if plant == "patient":
    patients["test"].append("A")  # a training patient's image in test
    digests["test"].append("a3")
  else:
    patients["test"].append("Z")  # a new patient id, but the pixels of a training image (CMMD's D1-0202 / D2-0284)
    digests["test"].append("b1")
  check = checklist.leakage(patients, digests)
  assert not check["passed"]
  assert (check["patients_in_several_splits"] == ["A"]) == (plant == "patient")
  assert (check["images_in_several_splits"] == ["b1"]) == (plant == "pixels")
  lines = "\n".join(checklist.section([checklist.Item("21", "leakage", checklist.leakage_text(check))], check))
  assert "LEAKAGE CHECK FAILED" in lines and "**FAILED: the splits leak.**" in lines


def test_calibration_slope_and_intercept():
  """Outcomes drawn from the probabilities: slope ~1, intercept ~0; probabilities made twice as extreme on the
  logit scale: slope ~0.5; shifted up by 1 on the logit: intercept ~-1."""
  rng = np.random.default_rng(0)
  probs = 1 / (1 + np.exp(-rng.normal(scale=1.5, size=20000)))
  labels = (rng.random(20000) < probs).astype(int)
  logit = calibration.logit(probs)
  slope, intercept = calibration.slope_and_intercept(labels, probs)[0]
  assert slope == pytest.approx(1, abs=0.05) and intercept == pytest.approx(0, abs=0.05)
  assert calibration.slope_and_intercept(labels, 1 / (1 + np.exp(-2 * logit)))[0, 0] == pytest.approx(0.5, abs=0.03)
  assert calibration.slope_and_intercept(labels, 1 / (1 + np.exp(-(logit + 1))))[0, 1] == pytest.approx(-1, abs=0.05)


def test_calibration_fit_has_intervals_and_nan_for_one_class_resamples():
  rng = np.random.default_rng(1)
  probs = rng.uniform(0.05, 0.95, 200)
  labels = (rng.random(200) < probs).astype(int)
  fitted = checklist.calibration_fit(labels, probs, np.arange(200).astype(str), 50, 0)
  low, high = fitted["slope"]["ci"]
  assert low < fitted["slope"]["value"] < high
  weights = np.zeros((1, 200))
  weights[0, labels == 1] = 1
  assert np.isnan(calibration.slope_and_intercept(labels, probs, weights)).all()


def test_items_no_tool_can_know_are_left_to_the_authors():
  items = checklist.author_items()
  assert all(item.text == checklist.AUTHORS for item in items)
  assert any("ethics" in item.topic for item in items) and any("intended use" in item.topic for item in items)
