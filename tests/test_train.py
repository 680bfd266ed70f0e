"""The trainer end to end: `python -m mammo_train` flags, workdir, resume, strategy, saved model."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

from absl import flags
import keras
import numpy as np
import pytest

from mammo_train import __main__ as cli
from mammo_train import data

# Small and quick: 32 px tiny synthetic images.
QUICK = ["--dataset=synthetic/tiny", "--image_size=32", "--batch_size=8", "--precision=float32"]


def run_main(argv, capsys) -> tuple[int, str]:
  """Runs the trainer in this process; returns (exit status, stderr)."""
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["mammo_train"] + argv)
  status = 0
  try:
    cli.main(["mammo_train"])
  except SystemExit as exit_:
    status = exit_.code
  finally:
    flags.FLAGS.unparse_flags()
    keras.mixed_precision.set_global_policy("float32")
  return status, capsys.readouterr().err


def _history(workdir) -> list[dict]:
  with open(os.path.join(workdir, "history.csv")) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mirrored_run(tiny_data_dir, tmp_path_factory):
  """One finished run over two logical CPUs (repo conftest.py splits the CPU)."""
  workdir = tmp_path_factory.mktemp("runs") / "mirrored"
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["mammo_train", *QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", "--epochs=2",
               "--strategy=mirrored", "--oversample"])
  try:
    cli.main(["mammo_train"])
  finally:
    flags.FLAGS.unparse_flags()
  return workdir


def test_mirrored_run_leaves_a_complete_workdir(mirrored_run):
  run = json.loads((mirrored_run / "run.json").read_text())
  assert run["replicas"] == 2 and run["global_batch_size"] == 16
  assert run["dataset"]["name"] == "synthetic/tiny/1.0.0"
  assert run["dataset"]["splits"] == {"train": 66, "validation": 12, "test": 16}
  for name in ("best.keras", "final.keras", "flags.txt", "eval/metrics.json", "eval/report.md"):
    assert (mirrored_run / name).is_file(), name
  assert list((mirrored_run / "logs" / "pipeline").iterdir())  # the training-batch grid
  history = _history(mirrored_run)
  assert [row["epoch"] for row in history] == ["0", "1"]
  assert {"val_auc", "val_loss", "learning_rate", "auc", "precision", "recall", "accuracy"} <= set(history[0])
  assert not (mirrored_run / "backup").exists()


def test_flags_file_reproduces_the_run_flags(mirrored_run):
  flags.FLAGS.unparse_flags()
  try:
    flags.FLAGS(["mammo_train", f"--flagfile={mirrored_run / 'flags.txt'}", "--epochs=5"])
    assert flags.FLAGS.strategy == "mirrored" and flags.FLAGS.oversample and flags.FLAGS.image_size == 32
    assert flags.FLAGS.epochs == 5  # later flags override the file
  finally:
    flags.FLAGS.unparse_flags()


def test_saved_model_predicts_on_raw_uint8_images(mirrored_run, tiny_builder):
  model = keras.models.load_model(mirrored_run / "best.keras")
  images, _ = next(iter(data.eval_batches(tiny_builder, "test", 32, 4)))
  probabilities = model.predict(images.numpy(), verbose=0)
  assert probabilities.shape == (4, 1) and probabilities.dtype == np.float32
  assert ((probabilities >= 0) & (probabilities <= 1)).all()


def test_finished_workdir_is_not_overwritten(mirrored_run, tiny_data_dir, capsys):
  status, err = run_main([*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={mirrored_run}"], capsys)
  assert status == 2 and "holds a finished run" in err


@pytest.mark.parametrize("argv, message", [
    (["--dataset=nope"], "unknown dataset 'nope'"),
    (["--dataset=mias/density"], "tfds build mammo_tfds/mias --config=density"),
    (["--model=resnet50", "--fine_tune_layers=1000"], "more than the"),
    (["--oversample", "--class_weights"], "--oversample and --class_weights"),
    (["--model=cnn", "--weights=imagenet"], "the cnn has no pretrained weights"),
])
def test_bad_flags_give_one_line(argv, message, tiny_data_dir, tmp_path, capsys):
  argv = ["--dataset=synthetic/tiny", "--image_size=32", f"--data_dir={tiny_data_dir}",
          f"--workdir={tmp_path / 'run'}", *argv]
  status, err = run_main(argv, capsys)
  lines = [line for line in err.splitlines() if line.startswith("mammo_train: error:")]
  assert status == 2 and len(lines) == 1 and message in lines[0], err
  assert "Traceback" not in err


def _trainer(argv, **kwargs):
  return subprocess.Popen([sys.executable, "-m", "mammo_train", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kwargs)


def test_command_line_refuses_bad_flags_in_one_line(tmp_path):
  trainer = _trainer(["--oversample", "--class_weights", f"--workdir={tmp_path}"])
  output, _ = trainer.communicate(timeout=300)
  assert trainer.returncode == 2
  assert output.rstrip().splitlines()[-1].startswith("mammo_train: error: --oversample and --class_weights")
  assert "Traceback" not in output


def test_killed_run_resumes_and_finishes_its_epochs(tiny_data_dir, tmp_path):
  epochs = 12
  workdir = tmp_path / "run"
  argv = [*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", f"--epochs={epochs}"]
  metadata = workdir / "backup" / "training_metadata.json"
  trainer = _trainer(argv)
  deadline = time.monotonic() + 300
  while not metadata.exists() and trainer.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  trainer.send_signal(signal.SIGKILL)
  trainer.communicate()
  backed_up = json.loads(metadata.read_text())["epoch"]
  assert 1 <= backed_up < epochs, "killed after the run ended: make the epochs slower"

  trainer = _trainer(argv)
  output, _ = trainer.communicate(timeout=600)
  assert trainer.returncode == 0, output
  assert f"Epoch {backed_up + 1}/{epochs}" in output and "Epoch 1/" not in output  # resumed, not restarted
  assert [int(row["epoch"]) for row in _history(workdir)] == list(range(epochs))
  assert pathlib.Path(workdir / "eval" / "metrics.json").is_file()
