"""Every command turns a usage mistake into one line on stderr and exit status 2, never a traceback.

Each case runs the command's own parse and main in this process (as its
command line does, on fresh flag values); one case per command also runs the
real command line, to show what a user sees.
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

from absl import flags
import keras
import pytest

from mammo_train import __main__ as trainer
from mammo_train import baselines, cli, config, evaluate, export, tune
from mammo_train.models import classifiers

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
COMMANDS = {
    "mammo_train": (config.define_train_flags, trainer.main),
    "mammo_train.tune": (config.define_tune_flags, tune.main),
    "mammo_train.evaluate": (config.define_evaluate_flags, evaluate.main),
    "mammo_train.baselines": (config.define_baselines_flags, baselines.main),
}
# What each case must say, in the one line: the flag or file it is about.
CASES = {
    "bad flag value": (["--batch_size=many"], "--batch_size=many"),
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
MODEL_FLAG = {"mammo_train": "--init_from", "mammo_train.tune": "--init_from", "mammo_train.evaluate": "--model"}
# Which cases apply: baselines take no model; evaluate resizes to any model's side.
SKIP = {("mammo_train.baselines", case) for case in CASES if "model" in case} | {
    ("mammo_train.evaluate", "model of another image size")}
# TensorFlow's C++ runtime logs a few lines when it is imported, whatever TF_CPP_MIN_LOG_LEVEL says
# (absl logging before its initialisation); they are not the command's output.
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWEF]\d{4} )")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict:
  folder = tmp_path_factory.mktemp("models")
  files = {"missing": folder / "nowhere" / "best.keras", "garbage": folder / "garbage.keras"}
  files["garbage"].write_bytes(b"PK\x03\x04 not really a zip")
  for name, size, classes in (("three_classes", 32, 3), ("size_48", 48, 2)):
    files[name] = folder / f"{name}.keras"
    classifiers.build("cnn", size, classes, "none", 0.5, 0.0).save(files[name])
  colour = keras.Input((32, 32, 3), dtype="uint8")
  files["colour"] = folder / "colour.keras"
  keras.Model(colour, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(colour))).save(
      files["colour"])
  return {name: str(path) for name, path in files.items()}


def _argv(command, case, tiny_data_dir, model_files, workdir) -> list:
  extra = [arg.format(model_flag=MODEL_FLAG.get(command, ""), **model_files) for arg in CASES[case][0]]
  argv = [f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", "--dataset=synthetic/tiny", "--image_size=32"]
  if command == "mammo_train.evaluate":
    argv = [arg for arg in argv if not arg.startswith("--image_size")]
    if not any(arg.startswith("--model=") for arg in extra):
      argv.append(f"--model={model_files['size_48']}")
  if command == "mammo_train.tune" and any(arg.startswith("--init_from") for arg in extra):
    argv.append("--search=learning_rate")  # an --init_from model brings its own dropout and L2
  return argv + extra


@pytest.mark.parametrize("command, case", [(command, case) for command in COMMANDS for case in CASES
                                           if (command, case) not in SKIP])
def test_usage_error_is_one_line_and_status_2(command, case, tiny_data_dir, model_files, tmp_path, capsys,
                                              monkeypatch):
  define, main = COMMANDS[command]
  values = flags.FlagValues()
  define(values)
  monkeypatch.setattr(flags, "FLAGS", values)
  with pytest.raises(SystemExit) as exit_:
    argv = cli.parse(command, values, [command, *_argv(command, case, tiny_data_dir, model_files, tmp_path)])
    cli.invoke(command, main, argv)
  keras.mixed_precision.set_global_policy("float32")
  lines = capsys.readouterr().err.splitlines()
  assert exit_.value.code == 2
  assert len(lines) == 1 and lines[0].startswith(f"{command}: error: ") and CASES[case][1] in lines[0], lines


@pytest.mark.parametrize("command, case", [
    ("mammo_train", "bad flag value"), ("mammo_train.tune", "unknown dataset"),
    ("mammo_train.evaluate", "model with other classes"), ("mammo_train.baselines", "unbuilt dataset")])
def test_the_command_line_prints_one_line_and_no_traceback(command, case, tiny_data_dir, model_files, tmp_path):
  done = subprocess.run([sys.executable, "-m", command, *_argv(command, case, tiny_data_dir, model_files, tmp_path)],
                        cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=600, check=False)
  lines = [line for line in done.stderr.splitlines() if line.strip() and not TF_STARTUP.match(line)]
  assert done.returncode == 2 and "Traceback" not in done.stderr
  assert len(lines) == 1 and lines[0].startswith(f"{command}: error: ") and CASES[case][1] in lines[0], lines


@pytest.mark.parametrize("argv, message", [
    (["--model={missing}", "--out={out}"], "no such file"),
    (["--model={garbage}", "--out={out}"], "no run.json beside it"),
    (["--model={run}/best.keras"], "--out is required"),
    (["--model={run}/best.keras", "--out={out}", "--format=coreml"], "--format"),
    (["--model={run}/garbage.keras", "--out={out}"], "not a readable Keras model"),
    (["--model={run}/three_classes.keras", "--out={out}"], "this dataset has 2"),
])
def test_export_usage_error_is_one_line_and_status_2(argv, message, model_files, tiny_data_dir, tmp_path, capsys,
                                                     monkeypatch):
  run = tmp_path / "run"  # a run folder: run.json names the tiny dataset
  run.mkdir()
  (run / "run.json").write_text(json.dumps({"dataset": {"name": "synthetic/tiny/1.1.0", "data_dir": str(
      tiny_data_dir / "synthetic" / "tiny" / "1.1.0")}}))
  (run / "eval").mkdir()
  (run / "eval" / "metrics.json").write_text("{}")
  (run / "eval" / "operating_point.json").write_text(json.dumps(
      {"thresholds": {"image": 0.5, "breast": 0.5}, "how": "chosen on validation"}))
  for name in ("garbage", "three_classes", "size_48"):
    shutil.copy(model_files[name], run / pathlib.Path(model_files[name]).name)
  shutil.copy(model_files["size_48"], run / "best.keras")
  values = flags.FlagValues()
  config.define_export_flags(values)
  monkeypatch.setattr(flags, "FLAGS", values)
  with pytest.raises(SystemExit) as exit_:
    parsed = cli.parse("mammo_train.export", values, ["mammo_train.export", *(
        arg.format(run=run, out=tmp_path / "out", **model_files) for arg in argv)])
    cli.invoke("mammo_train.export", export.main, parsed)
  lines = capsys.readouterr().err.splitlines()
  assert exit_.value.code == 2
  assert len(lines) == 1 and lines[0].startswith("mammo_train.export: error: ") and message in lines[0], lines
