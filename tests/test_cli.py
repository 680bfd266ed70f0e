"""Every command turns a usage mistake into one line on stderr and exit status 2, never a traceback."""
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys

import keras
import pytest

from mammo_train import models

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
COMMANDS = ("mammo_train", "mammo_train.tune", "mammo_train.evaluate", "mammo_train.baselines")
# What each case must say, in the one line: the flag or file it is about.
CASES = {
    "bad flag value": (["--batch_size=many"], "--batch_size"),
    "out-of-range flag value": (["--batch_size=0"], "--batch_size must be at least 1"),
    "unknown flag": (["--epoch_count=3"], "epoch_count"),
    "stray argument": (["epochs=3"], "unexpected arguments: epochs=3"),
    "unknown dataset": (["--dataset=inbreast"], "unknown dataset 'inbreast'"),
    "unbuilt dataset": (["--dataset=mias/density"], "tfds build mammo_tfds/mias --config=density"),
    "missing model file": (["{model_flag}={missing}"], "no such file"),
    "unreadable model file": (["{model_flag}={garbage}"], "not a readable Keras model"),
    "model with other classes": (["{model_flag}={three_classes}"], "this dataset has 2"),
    "model of another image size": (["{model_flag}={size_48}", "--image_size=32"], "pass --image_size=48"),
    "model of colour images": (["{model_flag}={colour}"], "not square one-channel images"),
}
# TensorFlow's C++ runtime logs a few lines when it is imported, whatever TF_CPP_MIN_LOG_LEVEL says
# (absl logging before its initialisation); they are not the command's output.
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")
MODEL_FLAG = {"mammo_train": "--init_from", "mammo_train.tune": "--init_from", "mammo_train.evaluate": "--model"}
# Which cases apply: baselines take no model; evaluate resizes to any model's side.
SKIP = {("mammo_train.baselines", case) for case in CASES if "model" in case} | {
    ("mammo_train.evaluate", "model of another image size")}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict:
  folder = tmp_path_factory.mktemp("models")
  files = {"missing": folder / "nowhere" / "best.keras", "garbage": folder / "garbage.keras"}
  files["garbage"].write_bytes(b"PK\x03\x04 not really a zip")
  for name, size, classes in (("three_classes", 32, 3), ("size_48", 48, 2)):
    files[name] = folder / f"{name}.keras"
    models.build("cnn", size, classes, "none", 0.5, 0.0).save(files[name])
  colour = keras.Input((32, 32, 3), dtype="uint8")
  files["colour"] = folder / "colour.keras"
  keras.Model(colour, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(colour))).save(
      files["colour"])
  return {name: str(path) for name, path in files.items()}


@pytest.fixture(scope="module")
def outcomes(tiny_data_dir, model_files, tmp_path_factory) -> dict:
  """(command, case) -> (exit status, stderr) of every applicable case, run two at a time."""
  workdir = tmp_path_factory.mktemp("cli")
  jobs = {}
  for command in COMMANDS:
    for case, (extra, _) in CASES.items():
      if (command, case) in SKIP:
        continue
      model_flag = MODEL_FLAG.get(command, "")
      argv = [arg.format(model_flag=model_flag, **model_files) for arg in extra]
      base = [f"--data_dir={tiny_data_dir}", f"--workdir={workdir / command / case.replace(' ', '_')}",
              "--dataset=synthetic/tiny"]
      if command == "mammo_train.evaluate" and not any(arg.startswith("--model=") for arg in argv):
        base.append(f"--model={model_files['size_48']}")
      jobs[(command, case)] = [sys.executable, "-m", command, *base, *argv]

  def run(argv):
    done = subprocess.run(argv, cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=600, check=False)
    return done.returncode, done.stderr

  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    return dict(zip(jobs, pool.map(run, jobs.values())))


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_usage_error_is_one_line_and_status_2(command, case, outcomes):
  if (command, case) in SKIP:
    pytest.skip(f"{command} has no {case} case")
  status, stderr = outcomes[(command, case)]
  lines = [line for line in stderr.splitlines() if line.strip() and not TF_STARTUP.match(line)]
  assert status == 2, stderr[-3000:]
  assert "Traceback" not in stderr
  assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), stderr[-3000:]
  assert CASES[case][1] in lines[0]
