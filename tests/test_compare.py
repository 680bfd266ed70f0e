"""python -m mammo_train.compare: recovers a known difference, finds none between equals, refuses mismatches."""
import csv
import json
import os
import pathlib
import re
import subprocess
import sys

from absl import flags
import numpy as np
import pytest

from mammo_train import cli, compare, config
from mammo_train.evaluation import comparison_report, evaluator, scored

REPO = pathlib.Path(__file__).resolve().parents[1]
# TensorFlow's C++ runtime logs a few lines when imported (as in test_cli); they are not the command's output.
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")


def _cases(n_patients, seed=0):
  """Per image: source, patient, laterality, view, label; two breasts of two views per patient."""
  rng = np.random.default_rng(seed)
  rows = []
  for p in range(n_patients):
    for side in "LR":
      label = int(rng.random() < 0.4)
      rows += [(f"P{p:04d}_{side}_{view}", f"P{p:04d}", side, view, label) for view in ("CC", "MLO")]
  return rows


def _write_evaluation(folder, rows, scores, *, dataset="synthetic/tiny", version="1.1.0", split="test",
                      folds=None, threshold=0.5):
  """An evaluation folder as mammo_train.evaluate writes it (the parts compare reads)."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True)
  names = ["benign", "malignant"]
  with open(folder / "predictions.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["source", "patient_id", "laterality", "view", "label", "score"] + (["fold"] if folds else []))
    for i, (source, patient, side, view, label) in enumerate(rows):
      writer.writerow([source, patient, side, view, names[label], scores[i]] + ([folds[i]] if folds else []))
  (folder / "metrics.json").write_text(json.dumps({
      "dataset": {"name": dataset, "version": version, "split": split, "class_names": names},
      "threshold": {"values": {"image": threshold, "breast": threshold}, "how": "chosen on validation",
                    "rule": "youden", "target_recall": None}}))
  return folder


def _breast_scores(rows, rng, noise):
  """A breast-level signal shared by a breast's views, plus per-image noise."""
  labels = np.array([row[4] for row in rows])
  signal = np.repeat(labels[::2] + rng.normal(scale=0.8, size=len(rows) // 2), 2)
  return 1 / (1 + np.exp(-(signal - 0.5 + rng.normal(scale=noise, size=len(rows)))))


def test_noise_makes_a_model_worse_and_the_difference_is_resolved(tmp_path):
  rows = _cases(400)
  rng = np.random.default_rng(1)
  good = _breast_scores(rows, rng, 0.1)
  noisy = 1 / (1 + np.exp(-(np.log(good / (1 - good)) + rng.normal(scale=2.0, size=len(rows)))))
  a = _write_evaluation(tmp_path / "good", rows, good)
  b = _write_evaluation(tmp_path / "noisy", rows, noisy)
  result = comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=200)
  pair = result["pairs"][0]
  breast = pair["levels"]["breast"]
  assert result["models"][str(a)]["levels"]["breast"]["roc_auc"] > result["models"][str(b)]["levels"]["breast"][
      "roc_auc"]
  assert breast["auc_difference"]["difference"] > 0 and breast["auc_difference"]["resolved"]
  assert breast["delong"]["p"] < 0.05
  assert "resolved: " + str(a) in pair["sentence"]
  for file in ("report.md", "compare.json", "roc_image.png", "roc_breast.png", "roc_patient.png"):
    assert (tmp_path / "out" / file).is_file()
  assert "## Reporting checklist" in (tmp_path / "out" / "report.md").read_text()


def test_identical_models_differ_by_nothing(tmp_path):
  rows = _cases(100)
  scores = _breast_scores(rows, np.random.default_rng(2), 0.3)
  folders = [_write_evaluation(tmp_path / name, rows, scores) for name in ("a", "b", "c")]
  result = comparison_report.compare_folders(folders, tmp_path / "out", n_bootstrap=100)
  assert len(result["pairs"]) == 3 and result["multiple_comparisons"]
  for pair in result["pairs"]:
    level = pair["levels"]["breast"]
    assert level["auc_difference"]["difference"] == 0 and not level["auc_difference"]["resolved"]
    assert level["mcnemar"]["p"] == 1.0 and "p_holm" in level["delong"]
    assert "not resolved" in pair["sentence"]


@pytest.mark.parametrize("change, message", [
    ({"dataset": "cmmd"}, "different dataset"),
    ({"version": "1.0.0"}, "different version"),
    ({"split": "validation"}, "different split"),
    ({"drop": 1}, "different examples"),
    ({"relabel": 1}, "different labels"),
    ({"folds": 1}, "cross-validated"),
])
def test_mismatched_folders_are_refused(tmp_path, change, message):
  rows = _cases(20)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a", rows, scores)
  other_rows = list(rows)
  if "drop" in change:
    other_rows = other_rows[1:]
  if "relabel" in change:
    source, patient, side, view, label = other_rows[0]
    other_rows[0] = (source, patient, side, view, 1 - label)
  b = _write_evaluation(tmp_path / "b", other_rows, scores[:len(other_rows)],
                        folds=[0] * len(other_rows) if "folds" in change else None,
                        **{k: v for k, v in change.items() if k in ("dataset", "version", "split")})
  with pytest.raises(scored.NotComparableError, match=message):
    comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=10)
  assert not (tmp_path / "out").exists()


def test_different_folds_are_refused(tmp_path):
  rows = _cases(10)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a" / "cv", rows, scores, folds=[i % 2 for i in range(len(rows))]).parent
  b = _write_evaluation(tmp_path / "b" / "cv", rows, scores, folds=[i % 3 for i in range(len(rows))]).parent
  with pytest.raises(scored.NotComparableError, match="different folds"):
    comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=10)


@pytest.mark.parametrize("case, said", [
    ("other version", "different version (9.9.9 vs 1.1.0)"),
    ("one folder", "give two or more"),
    ("not an evaluation", "not a training run, evaluation or cv folder"),
    ("no workdir", "--workdir is required"),
    ("bad bootstrap", "--n_bootstrap must be at least 1"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, case, said):
  rows = _cases(10)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a", rows, scores)
  b = _write_evaluation(tmp_path / "b", rows, scores, version="9.9.9")
  argv = {"other version": [str(a), str(b)], "one folder": [str(a)], "not an evaluation": [str(a), str(tmp_path)],
          "no workdir": [str(a), str(a)], "bad bootstrap": ["--n_bootstrap=0", str(a), str(a)]}[case]
  if case != "no workdir":
    argv = [f"--workdir={tmp_path / 'out'}"] + argv
  values = flags.FlagValues()
  config.define_compare_flags(values)
  monkeypatch.setattr(flags, "FLAGS", values)
  with pytest.raises(SystemExit) as exit_:
    cli.invoke("mammo_train.compare", compare.main, cli.parse("mammo_train.compare", values,
                                                              ["mammo_train.compare", *argv], takes_paths=True))
  lines = capsys.readouterr().err.splitlines()
  assert exit_.value.code == 2
  assert len(lines) == 1 and lines[0].startswith("mammo_train.compare: error: ") and said in lines[0], lines


def test_the_command_line_prints_one_line_and_no_traceback(tmp_path):
  rows = _cases(10)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a", rows, scores)
  b = _write_evaluation(tmp_path / "b", rows, scores, split="validation")
  done = subprocess.run([sys.executable, "-m", "mammo_train.compare", f"--workdir={tmp_path / 'out'}", str(a),
                         str(b)], cwd=REPO, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"})
  lines = [line for line in done.stderr.splitlines() if not TF_STARTUP.match(line)]
  assert done.returncode == 2 and len(lines) == 1 and "different split" in lines[0], done.stderr


def test_compares_real_evaluations_with_their_checklists(tiny_builder, tmp_path):
  """Two evaluations written by mammo_train.evaluate itself: compare reads them, and their checklists."""
  import keras  # only this test needs a model
  folders = []
  for bias in (-0.3, 0.4):
    images = keras.Input((64, 64, 1), dtype="uint8")
    brightness = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
    output = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(
        3 * bias), bias_initializer=keras.initializers.Constant(bias))(brightness)
    folder = tmp_path / f"eval{bias}"
    evaluator.evaluate_model(keras.Model(images, output), tiny_builder, "test", folder, 64, 16,
                            config.Protocol(n_bootstrap=20))
    stored = json.loads((folder / "checklist.json").read_text())
    assert stored["leakage"]["passed"]
    assert "## Reporting checklist" in (folder / "report.md").read_text()
    folders.append(folder)
  result = comparison_report.compare_folders(folders, tmp_path / "out", n_bootstrap=20)
  assert result["dataset"]["name"] == "synthetic/tiny" and result["dataset"]["counts"]["images"] == 16
  assert "leakage check of" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("damage", ["no_patient_column", "metrics_without_dataset", "multi_class"])
def test_damaged_folders_are_named_not_tracebacks(tmp_path, damage):
  rows = _cases(5)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a", rows, scores)
  b = _write_evaluation(tmp_path / "b", rows, scores)
  if damage == "no_patient_column":
    text = (b / "predictions.csv").read_text().replace("patient_id", "patient")
    (b / "predictions.csv").write_text(text)
  elif damage == "metrics_without_dataset":
    (b / "metrics.json").write_text("{}")
  else:
    stored = json.loads((b / "metrics.json").read_text())
    stored["dataset"]["class_names"] = ["normal", "benign", "malignant"]
    stored["threshold"] = None
    (b / "metrics.json").write_text(json.dumps(stored))
  with pytest.raises(scored.NotComparableError, match=str(b)):
    comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=10)
