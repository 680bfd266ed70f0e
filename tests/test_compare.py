"""python -m mammo_train.compare: recovers a known difference, finds none between equals, refuses mismatches;
binary (CMMD-like: two views per breast) and multi-class (MIAS density-like: one film per breast) alike."""
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
from sklearn import metrics as skm

from mammo_train import cli, compare, config
from mammo_train.evaluation import baselines, comparison_report, evaluator, scored

REPO = pathlib.Path(__file__).resolve().parents[1]
# TensorFlow's C++ runtime logs a few lines when imported (as in test_cli); they are not the command's output.
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")
BINARY = ("benign", "malignant")
DENSITY = ("fatty", "fatty-glandular", "dense")  # mias/density's classes


def _cases(n_patients, seed=0):
  """Per image: source, patient, laterality, view, label; two breasts of two views per patient."""
  rng = np.random.default_rng(seed)
  rows = []
  for p in range(n_patients):
    for side in "LR":
      label = int(rng.random() < 0.4)
      rows += [(f"P{p:04d}_{side}_{view}", f"P{p:04d}", side, view, label) for view in ("CC", "MLO")]
  return rows


def _films(n_patients, seed=0):
  """MIAS-like: one MLO film per breast, both breasts of a patient, a density class per patient."""
  rng = np.random.default_rng(seed)
  rows = []
  for p in range(n_patients):
    label = int(rng.integers(len(DENSITY)))
    rows += [(f"mdb{2 * p + i:04d}.pgm", f"mias-{p:04d}", side, "MLO", label) for i, side in enumerate("RL")]
  return rows


def _write_evaluation(folder, rows, scores, *, class_names=BINARY, dataset="synthetic/tiny", version="1.1.0",
                      split="test", folds=None, threshold=0.5):
  """An evaluation folder as mammo_train.evaluate writes it (the parts compare reads): a binary task's
  P(malignant) `score` and thresholds, or a multi-class one's p_<class> columns and no thresholds."""
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True)
  binary = len(class_names) == 2
  with open(folder / "predictions.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["source", "patient_id", "laterality", "view", "label",
                     *(["score"] if binary else [f"p_{name}" for name in class_names])] + (["fold"] if folds else []))
    for i, (source, patient, side, view, label) in enumerate(rows):
      writer.writerow([source, patient, side, view, class_names[label], *np.atleast_1d(scores[i])]
                      + ([folds[i]] if folds else []))
  (folder / "metrics.json").write_text(json.dumps({
      "dataset": {"name": dataset, "version": version, "split": split, "class_names": list(class_names)},
      "threshold": {"values": {"image": threshold, "breast": threshold}, "how": "chosen on validation",
                    "rule": "youden", "target_recall": None} if binary else None}))
  return folder


def _breast_scores(rows, rng, noise):
  """A breast-level signal shared by a breast's views, plus per-image noise."""
  labels = np.array([row[4] for row in rows])
  signal = np.repeat(labels[::2] + rng.normal(scale=0.8, size=len(rows) // 2), 2)
  return 1 / (1 + np.exp(-(signal - 0.5 + rng.normal(scale=noise, size=len(rows)))))


def _density_scores(rows, rng, noise):
  """Class probabilities: a softmax of a patient-level signal towards the true class, plus per-film `noise`."""
  labels = np.array([row[4] for row in rows])
  logits = 1.5 * np.eye(len(DENSITY))[labels] + np.repeat(rng.normal(size=(len(rows) // 2, len(DENSITY))), 2, axis=0)
  logits += rng.normal(scale=noise, size=logits.shape)
  return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def _noisier(probabilities, rng, noise):
  """The same model with noise added to its log-probabilities, renormalised."""
  logits = np.log(probabilities) + rng.normal(scale=noise, size=probabilities.shape)
  return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


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


@pytest.mark.parametrize("order", ["noisy first", "good first"])
def test_noise_makes_a_three_class_model_worse_and_the_macro_auc_difference_is_resolved(tmp_path, order):
  rows = _films(250)
  rng = np.random.default_rng(4)
  good = _density_scores(rows, rng, 0.3)
  noisy = _noisier(good, rng, 1.5)
  a = _write_evaluation(tmp_path / "good", rows, good, class_names=DENSITY, dataset="mias/density")
  b = _write_evaluation(tmp_path / "noisy", rows, noisy, class_names=DENSITY, dataset="mias/density")
  folders = [b, a] if order == "noisy first" else [a, b]
  result = comparison_report.compare_folders(folders, tmp_path / "out", n_bootstrap=200)
  pair = result["pairs"][0]
  assert list(pair["levels"]) == ["image"] and result["deciding_level"] == "image"  # one film per breast
  image = pair["levels"]["image"]
  auc = image["auc_difference"]
  labels = np.array([row[4] for row in rows])
  macro = {folder: skm.roc_auc_score(labels, scores, multi_class="ovr") for folder, scores in ((a, good), (b, noisy))}
  sign = 1 if order == "good first" else -1  # A minus B: the good model's advantage, signed by the order
  assert auc["difference"] == pytest.approx(sign * (macro[a] - macro[b])) and sign * auc["difference"] > 0.05
  assert auc["resolved"] and (auc["ci"][0] > 0 if sign > 0 else auc["ci"][1] < 0)
  assert len(auc["per_class"]) == 3
  assert f"resolved: {a} ranks each class above the others better" in pair["sentence"]
  assert "delong" not in image and image["mcnemar"]["only_a_right"] + image["mcnemar"]["only_b_right"] > 0
  good_row = result["models"][str(a)]["levels"]["image"]
  assert good_row["macro_roc_auc"] == pytest.approx(macro[a])
  assert good_row["accuracy"] == pytest.approx(np.mean(np.argmax(good, axis=1) == labels))
  assert good_row["ci"]["accuracy"][0] < good_row["accuracy"] < good_row["ci"]["accuracy"][1]
  assert set(good_row["one_vs_rest_roc_auc"]) == set(DENSITY)
  assert good_row["one_vs_rest_roc_auc"]["dense"]["value"] == pytest.approx(skm.roc_auc_score(labels == 2, good[:, 2]))
  assert "DeLong" in result["not_computed"]
  text = (tmp_path / "out" / "report.md").read_text()
  assert "Not computed: DeLong's test" in text and "AUC fatty-glandular vs rest" in text
  assert "DeLong's test not computed" in text  # the checklist says so too
  assert (tmp_path / "out" / "roc_image.png").is_file() and not (tmp_path / "out" / "roc_breast.png").exists()


def test_identical_three_class_models_differ_by_nothing(tmp_path):
  rows = _films(60)
  scores = _density_scores(rows, np.random.default_rng(5), 0.5)
  folders = [_write_evaluation(tmp_path / name, rows, scores, class_names=DENSITY) for name in ("a", "b", "c")]
  result = comparison_report.compare_folders(folders, tmp_path / "out", n_bootstrap=100)
  assert len(result["pairs"]) == 3 and result["multiple_comparisons"]
  for pair in result["pairs"]:
    image = pair["levels"]["image"]
    assert image["auc_difference"]["difference"] == 0 and image["auc_difference"]["ci"] == [0, 0]
    assert not image["auc_difference"]["resolved"]
    assert image["mcnemar"]["p"] == 1.0 and image["mcnemar"]["p_holm"] == 1.0
    assert "not resolved" in pair["sentence"] and "Holm-adjusted McNemar p 1" in pair["sentence"]


def test_three_class_cv_folders_are_compared_at_argmax_and_fold_by_fold_checked(tmp_path):
  """cv folders of a multi-class task: predictions.csv with p_<class> columns and `fold`, no thresholds."""
  rows = _films(40)
  rng = np.random.default_rng(6)
  scores = _density_scores(rows, rng, 0.5)
  folds = [int(row[1][-4:]) % 5 for row in rows]  # a patient's films in one fold
  a = _write_evaluation(tmp_path / "a" / "cv", rows, scores, class_names=DENSITY, split="cv", folds=folds).parent
  b = _write_evaluation(tmp_path / "b" / "cv", rows, _noisier(scores, rng, 0.5), class_names=DENSITY, split="cv",
                        folds=folds).parent
  (a / "cv" / "checklist.json").write_text(json.dumps({"leakage": {"passed": True}, "items": [
      {"claim_2024": ["22"], "tripod_ai": ["12c"], "topic": "model", "text": f"cnn at 128x128 (run {a}/fold_0)."},
      {"claim_2024": ["7"], "tripod_ai": ["5a"], "topic": "data source", "text": "not a run item"}]}))
  result = comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=50)
  assert result["dataset"]["cross_validated"] and result["models"][str(a)]["decisions"].startswith("the most")
  text = (tmp_path / "out" / "report.md").read_text()  # a cv folder's runs are its folds: its checklist names them
  assert f"| model of {a} | cnn at 128x128 (run {a}/fold_0). |" in text and "not a run item" not in text
  assert f"model and training of {b} | the model was not trained by a run" in text
  assert "the pooled out-of-fold predictions of 5-fold cross-validation" in text and "split 'cv'" not in text
  shifted = _write_evaluation(tmp_path / "c" / "cv", rows, scores, class_names=DENSITY, split="cv",
                              folds=[(fold + 1) % 5 for fold in folds]).parent
  with pytest.raises(scored.NotComparableError, match="different folds"):
    comparison_report.compare_folders([a, shifted], tmp_path / "refused", n_bootstrap=10)


@pytest.mark.parametrize("classes, message", [
    (DENSITY, "a binary and a multi-class task (3-class (fatty / fatty-glandular / dense) vs binary"),
    (("benign", "cancer"), "different classes (binary (benign / cancer) vs binary (benign / malignant))"),
])
def test_a_different_task_is_refused(tmp_path, classes, message):
  rows = _cases(10)
  a = _write_evaluation(tmp_path / "a", rows, np.linspace(0.01, 0.99, len(rows)))
  other = np.full((len(rows), len(classes)), 1 / len(classes)) if len(classes) > 2 else np.linspace(0, 1, len(rows))
  b = _write_evaluation(tmp_path / "b", rows, other, class_names=classes)
  with pytest.raises(scored.NotComparableError, match=re.escape(message)):
    comparison_report.compare_folders([a, b], tmp_path / "out", n_bootstrap=10)
  assert not (tmp_path / "out").exists()


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
    ("multi-class", "a binary and a multi-class task"),
    ("one folder", "give two or more"),
    ("not an evaluation", "not a training run, evaluation, cv or baseline folder"),
    ("no workdir", "--workdir is required"),
    ("bad bootstrap", "--n_bootstrap must be at least 1"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, case, said):
  rows = _cases(10)
  scores = np.linspace(0.01, 0.99, len(rows))
  a = _write_evaluation(tmp_path / "a", rows, scores)
  b = _write_evaluation(tmp_path / "b", rows, scores, version="9.9.9")
  c = _write_evaluation(tmp_path / "c", rows, np.full((len(rows), 3), 1 / 3), class_names=DENSITY)
  (tmp_path / "empty").mkdir()
  argv = {"other version": [str(a), str(b)], "multi-class": [str(a), str(c)], "one folder": [str(a)],
          "not an evaluation": [str(a), str(tmp_path / "empty")],
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


def test_the_command_prints_the_report_it_wrote(tmp_path, capsys, monkeypatch):
  """The printed path is the real OUT/report.md, relative as --workdir was given, not a bare 'report.md'."""
  rows = _films(10)
  scores = _density_scores(rows, np.random.default_rng(7), 0.5)
  for name in ("a", "b"):
    _write_evaluation(tmp_path / name, rows, scores, class_names=DENSITY)
  monkeypatch.chdir(tmp_path)
  values = flags.FlagValues()
  config.define_compare_flags(values)
  monkeypatch.setattr(flags, "FLAGS", values)
  cli.invoke("mammo_train.compare", compare.main, cli.parse(
      "mammo_train.compare", values, ["mammo_train.compare", "--workdir=out/ab", "--n_bootstrap=10", "a", "b"],
      takes_paths=True))
  printed = capsys.readouterr().out.splitlines()
  assert printed[-1] == "report: out/ab/report.md" and (tmp_path / "out" / "ab" / "report.md").is_file()
  assert len(printed) == 2 and printed[0].startswith("a minus b: macro one-vs-rest ROC-AUC difference +0.000")


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


def _evaluate_brightness_model(builder, folder, bias: float):
  """mammo_train.evaluate's own folder for a model that scores an image by its mean brightness."""
  import keras  # only the tests that evaluate need a model
  images = keras.Input((64, 64, 1), dtype="uint8")
  brightness = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
  output = keras.layers.Dense(1, activation="sigmoid", kernel_initializer=keras.initializers.Constant(
      3 * bias), bias_initializer=keras.initializers.Constant(bias))(brightness)
  evaluator.evaluate_model(keras.Model(images, output), builder, "test", folder, 64, 16,
                           config.Protocol(n_bootstrap=20))
  return folder


def test_compares_real_evaluations_with_their_checklists(tiny_builder, tmp_path):
  """Two evaluations written by mammo_train.evaluate itself: compare reads them, and their checklists."""
  folders = []
  for bias in (-0.3, 0.4):
    folder = _evaluate_brightness_model(tiny_builder, tmp_path / f"eval{bias}", bias)
    stored = json.loads((folder / "checklist.json").read_text())
    assert stored["leakage"]["passed"]
    assert "## Reporting checklist" in (folder / "report.md").read_text()
    folders.append(folder)
  result = comparison_report.compare_folders(folders, tmp_path / "out", n_bootstrap=20)
  assert result["dataset"]["name"] == "synthetic/tiny" and result["dataset"]["counts"]["images"] == 16
  assert "leakage check of" in (tmp_path / "out" / "report.md").read_text()


def test_a_model_is_compared_with_the_baselines_written_on_its_split(tiny_builder, tmp_path):
  """mammo_train.baselines' folders are ones compare takes (pixel_logistic: DeLong and McNemar beside the
  bootstrap); those whose decisions ignore their scores, and the baselines workdir itself, are refused by name."""
  model = _evaluate_brightness_model(tiny_builder, tmp_path / "model", 0.4)
  base = tmp_path / "baselines"
  baselines.run(tiny_builder, "test", base, image_size=32, batch_size=32, epochs=1,
                protocol=config.Protocol(n_bootstrap=20))
  result = comparison_report.compare_folders([model, base / "pixel_logistic"], tmp_path / "out", n_bootstrap=20)
  assert list(result["models"]) == [str(model), str(base / "pixel_logistic")]
  assert {"delong", "mcnemar", "auc_difference"} <= set(result["pairs"][0]["levels"]["image"])
  pixel = result["models"][str(base / "pixel_logistic")]
  assert "validation split" in pixel["operating_point"]["how"]  # its own threshold, chosen on validation
  assert (f"| model and training of {base / 'pixel_logistic'} | baseline pixel_logistic: logistic regression"
          in (tmp_path / "out" / "report.md").read_text())  # the checklist says what the baseline is
  with pytest.raises(scored.NotComparableError, match=re.escape(
      f"{base}: holds evaluations in its folders, not one itself: name one of them (majority, pixel_logistic, "
      f"prior_random), e.g. {base / 'pixel_logistic'}")):  # the example is one compare takes
    comparison_report.compare_folders([model, base], tmp_path / "out2", n_bootstrap=20)
  for own_decisions in ("majority", "prior_random"):
    with pytest.raises(scored.NotComparableError, match=re.escape(f"{base / own_decisions}: its decisions are its "
                                                                  "own, not made from its scores")):
      comparison_report.compare_folders([model, base / own_decisions], tmp_path / "out3", n_bootstrap=20)


@pytest.mark.parametrize("damage", ["no_patient_column", "metrics_without_dataset", "multi_class_without_p_columns"])
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
