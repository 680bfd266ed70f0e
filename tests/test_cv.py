"""Cross-validation: folds by patient and duplicate group, every development image scored once, the
validation fold recorded, one feature cache for all folds, resume after kills, compare on cv folders."""
import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

from absl import flags
import keras
import numpy as np
import pytest

from mammo_train import cli, config, cv
from mammo_train.inputs import data, feature_cache
from mammo_train.evaluation import baselines, subgroups
from mammo_train.training import cross_validation

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
QUICK = ["--dataset=synthetic/tiny", "--image_size=32", "--batch_size=8", "--precision=float32", "--n_bootstrap=50",
         "--folds=3", "--epochs=2"]


def _cv(workdir, data_dir, *args) -> dict:
  """The cross-validation as `python -m mammo_train.cv` runs it, in this process."""
  values = flags.FlagValues()
  config.define_cv_flags(values)
  values(["cv", *QUICK, f"--data_dir={data_dir}", f"--workdir={workdir}", *args])
  try:
    return cross_validation.run(config.cv_from_flags(values), config.flagfile(values, config.CV_FLAGS))
  finally:
    keras.mixed_precision.set_global_policy("float32")


def _rows(path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cv_run(tiny_data_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("cv") / "cnn"
  return workdir, _cv(workdir, tiny_data_dir, "--oversample")


def test_every_development_image_is_scored_once_by_the_fold_of_its_patient(cv_run, tiny_builder):
  workdir, metrics = cv_run
  rows = _rows(workdir / "cv" / "predictions.csv")
  development = data.split_metadata(tiny_builder, cross_validation.development(False), ("source",))
  assert sorted(row["source"] for row in rows) == sorted(development["source"])  # each once, test untouched
  test_sources = set(data.split_metadata(tiny_builder, "test", ("source",))["source"])
  assert not test_sources & {row["source"] for row in rows}
  fold_of = json.loads((workdir / "cv" / "folds.json").read_text())["patients"]
  for row in rows:
    assert int(row["fold"]) == fold_of[row["patient_id"]]
  # Each fold's own evaluation scored exactly its patients' images.
  for fold in range(3):
    scored = {row["source"] for row in _rows(workdir / f"fold_{fold}" / "eval" / "predictions.csv")}
    assert scored == {row["source"] for row in rows if row["fold"] == str(fold)}
  assert metrics["dataset"]["split"] == "cv" and metrics["dataset"]["counts"]["images"] == len(rows)
  assert set(metrics["levels"]) == {"image", "breast", "patient"}
  assert all("ci" in level for level in metrics["levels"].values())


def test_each_fold_trains_on_the_others_and_validates_on_the_next(cv_run):
  workdir, _ = cv_run
  fold_of = json.loads((workdir / "cv" / "folds.json").read_text())["patients"]
  for fold in range(3):
    run = json.loads((workdir / f"fold_{fold}" / "run.json").read_text())
    partition = run["dataset"]["partition"]
    validation = (fold + 1) % 3
    assert partition["test"]["name"] == f"fold {fold} of 3"
    assert partition["validation"]["name"] == f"fold {validation} of 3"
    trained = sum(1 for patient, f in fold_of.items() if f not in (fold, validation))
    assert trained and partition["train"]["images"] < run["dataset"]["splits"]["train"] + 12
    # The threshold was chosen on the validation fold, not on the scored one.
    chosen = json.loads((workdir / f"fold_{fold}" / "eval" / "operating_point.json").read_text())
    assert f"fold {validation} of 3" in chosen["how"]


def test_pooled_decisions_use_each_fold_s_own_thresholds(cv_run):
  workdir, metrics = cv_run
  rows = _rows(workdir / "cv" / "predictions.csv")
  by_fold = metrics["threshold"]["by_fold"]
  for row in rows:
    assert float(row["threshold_image"]) == pytest.approx(by_fold[row["fold"]]["image"])
  decided = sum(float(row["score"]) >= float(row["threshold_image"]) for row in rows)
  matrix = np.array(metrics["levels"]["image"]["confusion_matrix"])
  assert matrix[:, 1].sum() == decided  # malignant calls at each image's own fold threshold
  report = (workdir / "cv" / "report.md").read_text()
  assert "## Folds" in report and "mean (SD)" in report


def test_pixel_logistic_is_refitted_on_each_fold_s_training_part_and_compared_paired(cv_run, tiny_builder,
                                                                                     monkeypatch):
  workdir, metrics = cv_run
  assert set(metrics["baselines"]["pixel_logistic"]["comparison"]) == {"image", "breast"}
  assert "pixel_logistic" in (workdir / "cv" / "report.md").read_text()
  development = cross_validation.development(False)
  folds = cross_validation.assign(tiny_builder, development, 3, 0)
  fitted_on = []
  fit = baselines.fit_pixel_logistic
  monkeypatch.setattr(baselines, "fit_pixel_logistic",
                      lambda builder, *, train, **kwargs: fitted_on.append(train) or fit(builder, train=train, **kwargs))
  declaration = subgroups.declared(tiny_builder)
  pooled, _, _ = cross_validation.pooled_predictions(tiny_builder, development, folds, str(workdir), declaration)
  compared = cross_validation._pooled_baselines(  # pylint: disable=protected-access
      tiny_builder, development, folds, pooled, declaration, tiny_builder.info.features["label"].names, config.Protocol())
  assert len(fitted_on) == 3
  for fold, train in enumerate(fitted_on):
    held_out = folds.patients(lambda f, fold=fold: f in (fold, folds.validation_of(fold)))
    assert train.patients == folds.patients(lambda f: True) - held_out  # never its own fold nor its validation fold
  scores, operating, _ = compared["pixel_logistic"]
  assert scores.same_examples(pooled) and set(operating.by_fold) == {"0", "1", "2"}


def test_duplicate_pixels_keep_two_patients_in_one_fold(tiny_builder, monkeypatch):
  development = cross_validation.development(False)
  metadata = data.split_metadata(tiny_builder, development)
  digests = data.image_digests(tiny_builder, development)
  folds = cross_validation.assign(tiny_builder, development, 3, 0)
  a = metadata["patient_id"][0]
  b = next(p for p in metadata["patient_id"] if folds.of_patient[p] != folds.of_patient[a])
  copied = digests.copy()
  copied[list(metadata["patient_id"]).index(b)] = digests[0]  # one of b's images is a's first image
  monkeypatch.setattr(data, "image_digests", lambda builder, split: copied)
  linked = cross_validation.assign(tiny_builder, development, 3, 0)
  assert linked.of_patient[a] == linked.of_patient[b]
  assert cross_validation.assign(tiny_builder, development, 3, 0) == linked  # deterministic
  assert cross_validation.assign(tiny_builder, development, 3, 1) != linked  # from --seed


def test_a_frozen_backbone_s_features_are_computed_once_for_every_fold(tiny_data_dir, tmp_path, monkeypatch):
  computed = []
  features = feature_cache._features  # pylint: disable=protected-access
  monkeypatch.setattr(feature_cache, "_features", lambda *a: computed.append(1) or features(*a))
  _cv(tmp_path / "frozen", tiny_data_dir, "--model=resnet50", "--weights=none", "--fine_tune_layers=0",
      "--cache_views=2", "--epochs=1")
  assert len(computed) == 3  # two augmented views and one plain pass over the development data, once
  assert len(list((tmp_path / "frozen" / "feature_cache").glob("*/key.json"))) == 1
  assert not list(tmp_path.glob("frozen/fold_*/feature_cache"))


@pytest.mark.parametrize("args, message", [
    (["--folds=2"], "--folds must be at least 3"),
    (["--oversample", "--class_weights"], "correct it twice"),
])
def test_bad_flags_are_one_line(args, message, tiny_data_dir, tmp_path, capsys, monkeypatch):
  values = flags.FlagValues()
  config.define_cv_flags(values)
  values(["cv", *QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={tmp_path / 'w'}", *args])
  monkeypatch.setattr(flags, "FLAGS", values)
  with pytest.raises(SystemExit) as exit_:
    cli.invoke("mammo_train.cv", cv.main, ["cv"])
  err = capsys.readouterr().err
  assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("mammo_train.cv: error:"), err
  assert message in err and not (tmp_path / "w").exists()


def _kill_cv(argv, point=None) -> subprocess.CompletedProcess:
  command = [sys.executable, str(REPO / "tests" / "kill_run.py"), "--cv", point] if point else [
      sys.executable, "-m", "mammo_train.cv"]
  return subprocess.run([*command, *argv], cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=900,
                        check=False)


@pytest.mark.parametrize("point", ["between_folds", "between_epochs"])
def test_killed_cv_finishes_the_folds_left_and_never_retrains_one(point, tiny_data_dir, tmp_path):
  workdir = tmp_path / "cv"
  argv = [*QUICK, "--epochs=3", f"--data_dir={tiny_data_dir}", f"--workdir={workdir}"]
  killed = _kill_cv(argv, point)
  assert killed.returncode == -9, f"not killed at {point}: {killed.stderr[-2000:]}"
  finished_before = {fold: (workdir / f"fold_{fold}" / "run.json").stat().st_mtime_ns for fold in range(3)
                     if (workdir / f"fold_{fold}" / "run.json").exists()
                     and json.loads((workdir / f"fold_{fold}" / "run.json").read_text())["finished"]}
  assert (point == "between_folds") == (list(finished_before) == [0])
  rerun = _kill_cv(argv)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  for fold in range(3):
    assert [int(row["epoch"]) for row in _rows(workdir / f"fold_{fold}" / "history.csv")] == [0, 1, 2]
  for fold, mtime in finished_before.items():  # a finished fold is left as it was
    assert (workdir / f"fold_{fold}" / "run.json").stat().st_mtime_ns == mtime
  sources = [row["source"] for row in _rows(workdir / "cv" / "predictions.csv")]
  assert len(sources) == len(set(sources)) == 78  # synthetic/tiny's train 66 + validation 12


def test_compare_takes_two_cv_folders_at_their_fold_decisions_and_refuses_a_single_split(cv_run, tmp_path):
  from mammo_train.evaluation import comparison_report, scored  # pylint: disable=import-outside-toplevel
  workdir, metrics = cv_run
  twin = tmp_path / "twin"
  shutil.copytree(workdir / "cv", twin / "cv")
  result = comparison_report.compare_folders([workdir, twin], tmp_path / "compared", n_bootstrap=20)
  assert result["dataset"]["cross_validated"]
  for model in result["models"].values():  # decided per fold, as cv/report.md decided
    for level in ("image", "breast", "patient"):
      assert model["levels"][level]["sensitivity"] == pytest.approx(metrics["levels"][level]["sensitivity"])
  with pytest.raises(scored.NotComparableError, match="different split|cross-validated"):
    comparison_report.compare_folders([workdir, workdir / "fold_0"], tmp_path / "refused", n_bootstrap=20)


def test_the_report_carries_the_reporting_checklist(cv_run):
  workdir, _ = cv_run
  report = (workdir / "cv" / "report.md").read_text()
  assert report.index("## Folds") < report.index("## Reporting checklist")
  assert json.loads((workdir / "cv" / "checklist.json").read_text())["leakage"]["passed"]
  # It describes the folds, not a held-out split: the data was cross-validated.
  assert "Cross-validated over train+validation: 3 folds by patient" in report
  assert "internal: 3-fold cross-validation over train+validation" in report and "held-out 'cv'" not in report
