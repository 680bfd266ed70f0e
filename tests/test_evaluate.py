"""End-to-end evaluation on the tiny synthetic dataset, and the protocol's guarantees."""
import csv
import json
import pathlib
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image

from mammo_train import config
from mammo_train.evaluation import assessment, baselines, calibration, evaluator, explain, metrics, report, scored
from mammo_train.inputs import data
from mammo_train.models import classifiers
from tests.test_explain import split_localisation

REPO = pathlib.Path(__file__).resolve().parents[1]

PNGS = [f"{level}_{kind}.png" for level in ("image", "breast") for kind in ("roc", "pr", "confusion")]


@pytest.fixture(scope="module")
def model():
  """Brightness -> P(malignant): deterministic, untrained, enough to exercise the pipeline."""
  images = keras.Input((64, 64, 1), dtype="uint8")
  brightness = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
  return keras.Model(images, keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones",
                                                bias_initializer=keras.initializers.Constant(-0.3))(brightness))


def _valid_png(path) -> bool:
  with Image.open(path) as image:
    image.verify()
    return image.format == "PNG"


def test_threshold_ignores_the_scored_split():
  """The same validation set gives the same threshold whatever the test labels, which would choose another."""
  rng = np.random.default_rng(0)
  validation = assessment.Predictions(np.tile([0, 1], 20), np.tile([0.2, 0.6], 20) + rng.uniform(0, 0.3, 40),
                                      np.arange(40).astype(str), np.full(40, "L"))
  operating = assessment.choose_operating_point(validation, "validation", "youden")
  scores = rng.uniform(size=30)
  for labels in (scores > 0.5, scores > 0.8):
    test = assessment.Predictions(labels.astype(int), scores, np.arange(30).astype(str), np.full(30, "L"))
    result, _ = assessment.assess(test, metrics.BINARY_NAMES, operating, n_bootstrap=10)
    assert result["threshold"]["values"] == operating.thresholds
    assert metrics.choose_threshold(test.labels, scores, "youden") != operating.thresholds["image"]


def test_evaluate_model_writes_every_report_file(tiny_builder, model, tmp_path):
  workdir = tmp_path / "eval"
  result = evaluator.evaluate_model(model, tiny_builder, "test", workdir, 64, 16, config.Protocol(n_bootstrap=50),
                                   tb_logdir=tmp_path / "tb")
  for name in PNGS:
    assert _valid_png(workdir / name), name
  stored = json.loads((workdir / "metrics.json").read_text())
  assert stored["dataset"]["name"] == "synthetic/tiny" and stored["dataset"]["counts"]["images"] == 16
  assert stored["bootstrap"] == {"unit": "patient", "n_resamples": 50, "seed": 0, "confidence": 0.95,
                                 "method": "percentile"}
  assert set(stored["baselines"]) == {"majority", "prior_random"}
  assert "saliency" not in stored and not (workdir / evaluator.SALIENCY_GRID).exists()  # no Grad-CAM layer known
  markdown = (workdir / "report.md").read_text()
  assert all(f"({name})" in markdown for name in PNGS)
  assert "validation split" in markdown
  assert "| majority | roc_auc | 0.500 [0.500, 0.500] |" in markdown  # a baseline's value has its interval too
  assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
  with open(workdir / scored.PREDICTIONS) as f:
    rows = list(csv.DictReader(f))
  predicted = evaluator.predict(model, tiny_builder, "test", 64, 16)
  assert [row["patient_id"] for row in rows] == list(predicted.patient_id)
  assert [row["source"] for row in rows] == list(data.split_metadata(tiny_builder, "test", ("source",))["source"])
  np.testing.assert_allclose([float(row["score"]) for row in rows], predicted.scores, atol=1e-6)
  assert {row["label"] for row in rows} <= {"benign", "malignant"} and {row["view"] for row in rows} == {"CC", "MLO"}
  validation = evaluator.predict(model, tiny_builder, "validation", 64, 16)
  assert result["threshold"]["values"]["image"] == metrics.choose_threshold(validation.labels, validation.scores)
  stored_point = json.loads((workdir / assessment.OPERATING_POINT).read_text())
  assert stored_point["thresholds"] == result["threshold"]["values"]


def test_a_cnn_gets_a_saliency_grid_and_lesion_localisation_from_one_batched_pass(tiny_builder, tmp_path,
                                                                                  monkeypatch):
  cnn = classifiers.build("cnn", 64, 2, "none", 0.3, 0.0)
  calls = []
  grad_cam = explain.grad_cam
  monkeypatch.setattr(explain, "grad_cam", lambda model, images, **kw: calls.append(len(images)) or grad_cam(
      model, images, **kw))
  workdir = tmp_path / "eval"
  evaluator.evaluate_model(cnn, tiny_builder, "test", workdir, 64, 5, config.Protocol(n_bootstrap=50),
                          tb_logdir=tmp_path / "tb")
  assert calls == [5, 5, 5, 1]  # the 16 test images once, in the scoring batches
  stored = json.loads((workdir / "metrics.json").read_text())
  assert stored["saliency"]["layer"] == "block4_relu" and stored["saliency"]["images"] == 16
  assert _valid_png(workdir / evaluator.SALIENCY_GRID)
  markdown = (workdir / "report.md").read_text()
  assert "## Saliency" in markdown and f"]({evaluator.SALIENCY_GRID})" in markdown and "pointing game" in markdown
  logged = {value.tag for path in (tmp_path / "tb").glob("events.out.tfevents.*")
            for event in tf.compat.v1.train.summary_iterator(str(path)) for value in event.summary.value}
  assert "evaluation/saliency_grid" in logged
  # The streamed measures equal the in-memory ones, computed here from the whole split at once.
  examples = list(data.eval_examples(tiny_builder, "test", 64, ["label", "patient_id", "crop_box", "flipped",
                                                                  "lesion_box"]))
  maps = grad_cam(cnn, np.stack([e["image"] for e in examples]))
  expected = split_localisation(
      maps, [e["crop_box"] for e in examples], [e["flipped"] for e in examples],
      [explain.lesion_boxes(e) for e in examples], [e["label"] for e in examples],
      [e["patient_id"].decode() for e in examples], n_resamples=50)
  malignant = stored["localisation"]["malignant"]
  assert malignant["n"] == sum(e["label"] == 1 for e in examples) > 0
  for measure in ("pointing_game", "mass_inside"):
    entry = malignant[measure]
    assert entry["value"] == pytest.approx(expected["malignant"][measure]["value"], abs=1e-6)
    low, high = entry["ci"]
    assert 0 <= low <= entry["value"] <= high <= 1


def test_test_labels_never_reach_the_threshold(tiny_builder, model, tmp_path, monkeypatch):
  chosen = evaluator.evaluate_model(model, tiny_builder, "test", tmp_path / "a", 64, 16, config.Protocol(n_bootstrap=10))
  predict = evaluator.predict

  def inverted_test_labels(model, builder, split, *args):
    predictions = predict(model, builder, split, *args)
    if split == "test":
      predictions.labels = 1 - predictions.labels
    return predictions

  monkeypatch.setattr(evaluator, "predict", inverted_test_labels)
  again = evaluator.evaluate_model(model, tiny_builder, "test", tmp_path / "b", 64, 16, config.Protocol(n_bootstrap=10))
  assert again["threshold"] == chosen["threshold"]
  assert again["levels"]["image"]["accuracy"] == pytest.approx(1 - chosen["levels"]["image"]["accuracy"])


def test_cross_dataset_takes_the_training_runs_threshold(tiny_builder, model, tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  model.save(run / "best.keras")
  model_path = str(run / "best.keras")
  chosen = evaluator.evaluate_model(model_path, tiny_builder, "test", run / "eval", None, 16, config.Protocol(n_bootstrap=10))
  crossed = evaluator.evaluate_model(model_path, tiny_builder, "all", tmp_path / "cross", None, 16, config.Protocol(n_bootstrap=10))
  assert crossed["threshold"]["values"] == chosen["threshold"]["values"]
  assert str(run / "eval" / assessment.OPERATING_POINT) in crossed["threshold"]["how"]
  assert crossed["dataset"]["counts"]["images"] == 94
  bare = evaluator.evaluate_model(model, tiny_builder, "all", tmp_path / "bare", 64, 16, config.Protocol(n_bootstrap=10))
  assert bare["threshold"]["values"] == {"image": 0.5, "breast": 0.5}
  assert "default 0.5" in (tmp_path / "bare" / "report.md").read_text()


def test_multiclass_report(tmp_path):
  rng = np.random.default_rng(1)
  labels = np.tile(np.arange(3), 10)
  probs = rng.dirichlet(np.ones(3), size=30)
  target = assessment.Predictions(labels, probs, (np.arange(30) // 2).astype(str), np.full(30, "L"))
  result, curves = assessment.assess(target, ("fatty", "glandular", "dense"), None, n_bootstrap=20)
  result["dataset"] = {"name": "fake/density", "version": "1.0.0", "split": "test",
                       "class_names": ["fatty", "glandular", "dense"],
                       "counts": assessment.counts(target, ("fatty", "glandular", "dense"))}
  result["model"] = "random"
  report.write(result, curves, tmp_path)
  assert set(result["levels"]) == {"image"} and result["threshold"] is None
  assert "macro_roc_auc" in result["levels"]["image"]
  for name in ("image_roc.png", "image_pr.png", "image_confusion.png"):
    assert _valid_png(tmp_path / name)
  assert "argmax" in (tmp_path / "report.md").read_text()


def test_importing_defines_no_flags_and_the_cli_has_help():
  assert "threshold_rule" not in flags.FLAGS
  done = subprocess.run([sys.executable, "-m", "mammo_train.evaluate", "--helpfull"], capture_output=True,
                        text=True, timeout=120, check=False)
  assert "--threshold_rule" in done.stdout and "--baselines_dir" in done.stdout  # absl exits 1 after help


def test_report_says_first_what_it_found_per_subgroup_and_calibrated(tiny_builder, model, tmp_path):
  run = tmp_path / "run"
  run.mkdir()
  model.save(run / "best.keras")
  result = evaluator.evaluate_model(str(run / "best.keras"), tiny_builder, "test", run / "eval", None, 16,
                                   config.Protocol(n_bootstrap=20))
  assert set(result["levels"]) == {"image", "breast", "patient"}
  assert result["levels"]["patient"]["n"] == result["dataset"]["counts"]["patients"]
  declared = result["subgroups"]["declaration"]
  assert "metadata.json" in declared["source"] and declared["shortcuts"] == []
  image_rows = {(row["feature"], row["subgroup"]) for row in result["subgroups"]["levels"]["image"]}
  assert {("view", "CC"), ("view", "MLO"), ("laterality", "L"), ("laterality", "R")} <= image_rows
  assert {row["feature"] for row in result["subgroups"]["levels"]["breast"]} == {"laterality"}
  lines = (run / "eval" / "report.md").read_text().splitlines()
  assert lines[2].startswith("- **Metadata-only baseline**") and lines[3].startswith("- **Weakest subgroup**")
  assert "## Subgroups" in lines and "## Calibration" in lines
  maps = calibration.load(run / "eval" / calibration.CALIBRATION)
  assert set(maps) == {"image", "breast"} and set(result["calibration"]["levels"]) == set(maps)
  assert _valid_png(run / "eval" / "calibration_reliability.png")
  crossed = evaluator.evaluate_model(str(run / "best.keras"), tiny_builder, "all", tmp_path / "cross", None, 16,
                                    config.Protocol(n_bootstrap=20))
  assert f"taken from {run / 'eval' / calibration.CALIBRATION}" == crossed["calibration"]["how"]
  assert not (tmp_path / "cross" / calibration.CALIBRATION).exists()


def test_dataset_prepared_before_subgroups_were_declared_still_evaluates(tiny_data_dir, model, tmp_path):
  old = tmp_path / "tfds"
  shutil.copytree(tiny_data_dir, old)
  (stored,) = old.glob("synthetic/tiny/*/metadata.json")
  metadata = json.loads(stored.read_text())
  del metadata["subgroups"]
  stored.write_text(json.dumps(metadata))
  builder = data.load_builder("synthetic/tiny", str(old))
  result = evaluator.evaluate_model(model, builder, "test", tmp_path / "eval", 64, 16,
                                   config.Protocol(n_bootstrap=10))
  assert "built before" in result["subgroups"]["declaration"]["source"]
  assert {row["feature"] for row in result["subgroups"]["levels"]["image"]} == {"laterality", "view"}


@pytest.fixture(scope="module")
def cmmd_builder(tmp_path_factory):
  """A CMMD-layout tree (tools/write_cmmd.py, 80 patients, small films) built at 64x64 by the tfds command."""
  manual, data_dir = tmp_path_factory.mktemp("cmmd_manual"), tmp_path_factory.mktemp("cmmd_tfds")
  subprocess.run([sys.executable, str(REPO / "tools" / "write_cmmd.py"), str(manual), "--patients", "80",
                  "--height", "120", "--width", "100"], check=True, capture_output=True, cwd=REPO)
  tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
  subprocess.run([str(tfds_cli), "build", str(REPO / "mammo_tfds" / "cmmd"),
                  '--config={"name": "64", "image_size": 64}',
                  f"--manual_dir={manual}", f"--data_dir={data_dir}"], cwd=data_dir, check=True, capture_output=True)
  return data.load_builder("cmmd/64", str(data_dir))


def test_cmmd_model_is_compared_with_age_and_subset_inside_each_stratum(cmmd_builder, model, tmp_path):
  result = evaluator.evaluate_model(model, cmmd_builder, "test", tmp_path, 64, 16, config.Protocol(n_bootstrap=20))
  assert result["subgroups"]["declaration"]["shortcuts"] == ["age", "subset"]
  baseline = result["baselines"][assessment.METADATA_BASELINE]
  assert "age, subset" in baseline["description"]
  strata = result["strata"]["levels"]["breast"]
  assert {row["feature"] for row in strata} == {"age", "subset"}
  assert sum(row["n"] for row in strata if row["feature"] == "subset") == result["levels"]["breast"]["n"]
  assert result["verdict"]["baseline"]["overall"] == baseline["comparison"]["breast"]["roc_auc"]
  breast_features = {row["feature"] for row in result["subgroups"]["levels"]["breast"]}
  assert breast_features == {"subset", "age", "abnormality", "laterality"}
  lines = (tmp_path / "report.md").read_text().splitlines()
  assert lines[2].startswith("- **The model") and "age + subset" in lines[2]
  assert lines[3].startswith("- **Within each stratum**") and "subset D1" in lines[3]


def test_cmmd_baselines_include_the_metadata_baseline_a_model_is_then_compared_with(cmmd_builder, model, tmp_path):
  results = baselines.run(cmmd_builder, "test", tmp_path / "baselines",
                          names=("age_logistic", "metadata_logistic"),
                          protocol=config.Protocol(n_bootstrap=10))
  assert set(results) == {"age_logistic", "metadata_logistic"}
  assert results["metadata_logistic"]["subgroups"]["declaration"]["shortcuts"] == ["age", "subset"]
  result = evaluator.evaluate_model(model, cmmd_builder, "test", tmp_path / "eval", 64, 16,
                                   config.Protocol(n_bootstrap=10), baselines_dir=tmp_path / "baselines")
  loaded = result["baselines"][assessment.METADATA_BASELINE]["levels"]["breast"]["roc_auc"]
  assert loaded == pytest.approx(results["metadata_logistic"]["levels"]["breast"]["roc_auc"])
