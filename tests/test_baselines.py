"""Baselines give the numbers they should, and the same report a model gets."""
import json

import numpy as np
import pytest
from absl import flags
from sklearn.metrics import roc_auc_score as skm_auc

from mammo_train import config
from mammo_train.evaluation import assessment, baselines, metrics, subgroups
from mammo_train.inputs import data

NAMES = metrics.BINARY_NAMES


def _metadata(labels, **extra):
  n = len(labels)
  return {"label": np.asarray(labels), "patient_id": (np.arange(n) // 2).astype(str),
          "laterality": np.full(n, "L"), **extra}


def _accuracy(predictions, class_names=NAMES):
  result, _ = assessment.assess(predictions, class_names, None, n_bootstrap=10)
  return result["levels"]["image"]["accuracy"]


@pytest.mark.parametrize("labels", [[0] * 30 + [1] * 70, [0] * 20 + [1] * 50 + [2] * 30])
def test_majority_and_prior_random_exact_accuracy(labels):
  """Shares equal in train and scored split: majority = top share, random = sum of squared shares."""
  shares = baselines.class_shares(labels, len(set(labels)))
  names = NAMES if len(shares) == 2 else ("fatty", "glandular", "dense")
  metadata = _metadata(labels)
  assert _accuracy(baselines.majority(shares, metadata), names) == pytest.approx(shares.max())
  assert _accuracy(baselines.prior_random(shares, metadata), names) == pytest.approx(np.sum(shares**2))


def test_prior_random_uses_the_training_prior():
  train_shares = np.array([0.5, 0.5])
  predictions = baselines.prior_random(train_shares, _metadata([0] * 20 + [1] * 80))
  result, _ = assessment.assess(predictions, NAMES, None, n_bootstrap=10)
  image = result["levels"]["image"]
  assert image["accuracy"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.8)
  assert image["sensitivity"] == image["specificity"] == pytest.approx(0.5)
  assert image["roc_auc"] == 0.5 and image["pr_auc"] == pytest.approx(0.8)


def test_age_logistic_learns_an_age_effect():
  ages = np.arange(30, 90, dtype=float)
  train = _metadata((ages > 55).astype(int), age=ages)
  scores = baselines.predict_age_logistic(baselines.fit_age_logistic(train), train)
  assert metrics.point_metrics(train["label"], scores, metrics.threshold_decisions(scores, 0.5), NAMES)[
      "roc_auc"] == 1.0


def test_run_on_tiny_synthetic_writes_reports_a_model_can_be_compared_with(tiny_builder, tmp_path):
  builder = tiny_builder
  results = baselines.run(builder, "test", tmp_path / "baselines", image_size=32, batch_size=32, epochs=1,
                          protocol=config.Protocol(n_bootstrap=20))
  assert set(results) == {"majority", "prior_random", "pixel_logistic"}  # no age in synthetic
  test_labels = data.split_metadata(builder, "test")["label"]
  train_shares = baselines.class_shares(data.split_metadata(builder, "train")["label"], 2)
  assert results["majority"]["levels"]["image"]["accuracy"] == pytest.approx(np.mean(test_labels == 1))
  expected = train_shares[0] * np.mean(test_labels == 0) + train_shares[1] * np.mean(test_labels == 1)
  assert results["prior_random"]["levels"]["image"]["accuracy"] == pytest.approx(expected)
  pixel = json.loads((tmp_path / "baselines" / "pixel_logistic" / "metrics.json").read_text())
  assert "validation split" in pixel["threshold"]["how"]
  for name in results:
    assert (tmp_path / "baselines" / name / "report.md").exists()
  assert "(pixel_logistic/report.md)" in (tmp_path / "baselines" / "report.md").read_text()
  loaded = baselines.load(tmp_path / "baselines", builder.info.full_name, "test")
  assert set(loaded) == set(results) and loaded["pixel_logistic"][1] is not None
  scores = np.linspace(0, 1, len(test_labels))
  model = assessment.Predictions(test_labels, scores, *(loaded["majority"][0].patient_id,
                                                        loaded["majority"][0].laterality))
  result, _ = assessment.assess(model, NAMES, None, baselines=loaded, n_bootstrap=20)
  assert set(result["baselines"]["pixel_logistic"]["comparison"]) == {"image", "breast"}


def test_importing_defines_no_flags():
  assert "baselines" not in flags.FLAGS and "target_recall" not in flags.FLAGS


def test_metadata_logistic_reads_numbers_categories_and_missing_values():
  """Malignant = D2 or older than 60; a missing age (-1) must not read as 'young'."""
  rng = np.random.default_rng(0)
  subset = rng.choice(["D1", "D2"], 400)
  age = rng.integers(30, 90, 400)
  labels = ((subset == "D2") | (age > 60)).astype(int)
  recorded = np.where(rng.uniform(size=400) < 0.1, -1, age)
  train = _metadata(labels, age=recorded, subset=subset)
  model = baselines.fit_metadata_logistic(train, ["age", "subset"], {"age": -1})
  scores = baselines.predict_metadata_logistic(model, train)
  known = recorded >= 0
  assert skm_auc(labels[known], scores[known]) > 0.95
  unseen = _metadata(np.array([0, 1]), age=np.array([50, -1]), subset=np.array(["D3", "D2"]))
  assert np.all(np.isfinite(baselines.predict_metadata_logistic(model, unseen)))  # unseen subset: all-zero code


def test_metadata_baseline_is_scored_on_the_models_examples():
  labels = np.array([0, 0, 1, 1] * 10)  # two views per breast
  train = validation = scored = _metadata(labels, subset=np.where(labels == 1, "D2", "D1"))
  target = assessment.Predictions(labels, np.linspace(0, 1, 40), scored["patient_id"], scored["laterality"],
                                  features={"subset": scored["subset"]})
  declaration = subgroups.parse({"features": [{"name": "subset"}], "shortcuts": ["subset"]}, "test")
  predictions, operating, description = baselines.metadata_baseline(
      {"train": train, "validation": validation, "target": scored}, target, declaration)
  assert predictions.same_examples(target) and "subset" in description
  assert operating is not None and set(operating.thresholds) == {"image", "breast"}
  assert skm_auc(labels, predictions.scores) == 1.0
