"""The trainer end to end: flags, workdir, strategy, saved model, and resume after a kill at any point."""
import csv
import json
import os
import pathlib
import subprocess
import sys

from absl import flags
import keras
import numpy as np
import pytest

from mammo_train import __main__ as trainer
from mammo_train import cli, config
from mammo_train.inputs import data

REPO = pathlib.Path(__file__).resolve().parents[1]
# Small and quick: 32 px tiny synthetic images, few bootstrap resamples.
QUICK = ["--dataset=synthetic/tiny", "--image_size=32", "--batch_size=8", "--precision=float32", "--n_bootstrap=50"]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_main(argv, capsys, monkeypatch) -> tuple[int, str]:
  """Runs the trainer in this process, as its command line does; returns (exit status, stderr)."""
  values = flags.FlagValues()
  config.define_train_flags(values)
  values(["mammo_train", *argv])
  monkeypatch.setattr(flags, "FLAGS", values)
  status = 0
  try:
    cli.invoke("mammo_train", trainer.main, ["mammo_train"])
  except SystemExit as exit_:
    status = exit_.code
  finally:
    keras.mixed_precision.set_global_policy("float32")
  return status, capsys.readouterr().err


def history(workdir) -> list[dict]:
  with open(os.path.join(workdir, "history.csv")) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mirrored_run(tiny_data_dir, tmp_path_factory):
  """One finished run over two logical CPUs (repo conftest.py splits the CPU)."""
  workdir = tmp_path_factory.mktemp("runs") / "mirrored"
  with pytest.MonkeyPatch.context() as patch:
    values = flags.FlagValues()
    config.define_train_flags(values)
    values(["mammo_train", *QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", "--epochs=2",
            "--strategy=mirrored", "--oversample"])
    patch.setattr(flags, "FLAGS", values)
    trainer.main(["mammo_train"])
  return workdir


def test_mirrored_run_leaves_a_complete_workdir(mirrored_run):
  run = json.loads((mirrored_run / "run.json").read_text())
  assert run["replicas"] == 2 and run["global_batch_size"] == 16 and run["finished"]
  assert run["dataset"]["name"] == "synthetic/tiny/1.1.0"
  assert run["dataset"]["splits"] == {"train": 66, "validation": 12, "test": 16}
  for name in ("best.keras", "final.keras", "flags.txt", "eval/metrics.json", "eval/report.md"):
    assert (mirrored_run / name).is_file(), name
  assert list((mirrored_run / "logs" / "pipeline").iterdir())  # the training-batch grid
  rows = history(mirrored_run)
  assert [row["epoch"] for row in rows] == ["0", "1"]
  assert {"val_auc", "val_loss", "learning_rate", "auc", "precision", "recall", "accuracy"} <= set(rows[0])
  assert not (mirrored_run / "backup").exists()
  best = json.loads((mirrored_run / "best.keras.json").read_text())
  assert best["val_auc"] == pytest.approx(max(float(row["val_auc"]) for row in rows))


def test_flags_file_reproduces_the_run_flags(mirrored_run):
  values = flags.FlagValues()
  config.define_train_flags(values)
  values(["mammo_train", f"--flagfile={mirrored_run / 'flags.txt'}", "--epochs=5"])
  assert values.strategy == "mirrored" and values.oversample and values.image_size == 32
  assert values.n_bootstrap == 50 and values.epochs == 5  # later flags override the file


def test_saved_model_predicts_on_raw_uint8_images(mirrored_run, tiny_builder):
  model = keras.models.load_model(mirrored_run / "best.keras")
  images, _ = next(iter(data.eval_batches(tiny_builder, "test", 32, 4)))
  probabilities = model.predict(images.numpy(), verbose=0)
  assert probabilities.shape == (4, 1) and probabilities.dtype == np.float32
  assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_finished_workdir_is_not_overwritten(mirrored_run, tiny_data_dir, capsys, monkeypatch):
  status, err = run_main([*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={mirrored_run}"], capsys, monkeypatch)
  assert status == 2 and "holds a finished run" in err


@pytest.mark.parametrize("argv, message", [
    (["--model=resnet50", "--weights=none", "--fine_tune_layers=1000"], "more than the"),
    (["--model=cnn", "--weights=imagenet"], "the cnn has no pretrained weights"),
])
def test_bad_model_flags_give_one_line(argv, message, tiny_data_dir, tmp_path, capsys, monkeypatch):
  argv = [*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={tmp_path / 'run'}", *argv]
  status, err = run_main(argv, capsys, monkeypatch)
  assert status == 2 and err.count("\n") == 1 and err.startswith("mammo_train: error:") and message in err, err


def test_backbones_default_to_imagenet_weights_and_the_cnn_to_none():
  values = flags.FlagValues()
  config.define_train_flags(values)
  values(["mammo_train", "--workdir=w", "--model=resnet50"])
  cfg = config.train_from_flags(values)
  assert cfg.weights == "imagenet" and cfg.fine_tune_layers == 0 and cfg.frozen_backbone
  values(["mammo_train", "--workdir=w", "--model=cnn"])
  assert config.train_from_flags(values).weights == "none"


# --- A run killed at any point finishes when the same command is run again. -------------------------------


def _train(argv, point=None) -> subprocess.CompletedProcess:
  command = [sys.executable, str(REPO / "tests" / "kill_run.py"), point] if point else [
      sys.executable, "-m", "mammo_train"]
  return subprocess.run([*command, *argv], cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=600,
                        check=False)


FROZEN = ["--model=resnet50", "--weights=none", "--fine_tune_layers=0", "--cache_views=2"]


@pytest.mark.parametrize("point, extra", [
    ("first_epoch", []), ("between_epochs", []), ("backup", []), ("final_model", []),
    ("feature_cache", FROZEN), ("evaluation", []),
])
def test_killed_run_finishes_when_the_same_command_is_rerun(point, extra, tiny_data_dir, tmp_path):
  epochs = 4
  workdir = tmp_path / "run"
  argv = [*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", f"--epochs={epochs}", *extra]
  killed = _train(argv, point)
  assert killed.returncode == -9, f"not killed at {point}: {killed.stderr[-2000:]}"
  assert not json.loads((workdir / "run.json").read_text())["finished"]

  rerun = _train(argv)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert [int(row["epoch"]) for row in history(workdir)] == list(range(epochs)), "every epoch logged once"
  for name in ("best.keras", "final.keras"):
    assert keras.models.load_model(workdir / name).input.shape[1:] == (32, 32, 1)
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert metrics["dataset"]["split"] == "test"
  assert json.loads((workdir / "run.json").read_text())["finished"]
  if point == "evaluation":  # and a finished run is refused
    again = _train(argv)
    assert again.returncode == 2 and "holds a finished run" in again.stderr
