"""The one owner of a training run's folder: every path in it, and a finished run loaded as one object.

A training run (`python -m mammo_train --workdir=RUN`) leaves:

  RUN/flags.txt                  the resolved flags, reusable with --flagfile
  RUN/run.json                   dataset identity (name, version, data dir, split sizes, classes,
                                 stored size), precision, strategy, batch; "finished" once done
  RUN/best.keras (+ .json)       the model of the best validation AUC (and that AUC)
  RUN/final.keras                the model after the last epoch
  RUN/history.csv, RUN/logs/     the epoch log; TensorBoard
  RUN/feature_cache/             a frozen backbone's features (`inputs.feature_cache`)
  RUN/backup/                    while unfinished: what a rerun resumes from (`training.checkpoints`)
  RUN/eval/                      the test-split evaluation: metrics.json, report.md, the plots,
                                 operating_point.json (thresholds chosen on validation) and
                                 calibration.json (maps fitted on validation)

Training writes through `RunFolder`; evaluation, prediction and export read a
finished run with `load`, so each file is named in one place and read by one
loader. Other commands' workdirs (evaluate, baselines, predict, export) keep
their flags in the same flags.txt (`write_flags`).
"""
import dataclasses
import json
import os
import pathlib

import keras

from mammo_train import errors
from mammo_train.evaluation import assessment, calibration, report
from mammo_train.models import classifiers
from mammo_train.training import checkpoints

FLAGS = "flags.txt"
RUN = "run.json"
BEST = "best.keras"
FINAL = "final.keras"
HISTORY = "history.csv"
LOGS = "logs"
FEATURE_CACHE = "feature_cache"
BACKUP = "backup"
EVAL = "eval"
RUNTIMES = "runtimes"  # the model converted for another runtime (`inference.runtimes`), kept for reuse


@dataclasses.dataclass(frozen=True)
class RunFolder:
  """The paths of one run folder (strings, as Keras and TensorFlow take them)."""
  root: str

  def _path(self, *parts: str) -> str:
    return os.path.join(self.root, *parts)

  run_json = property(lambda self: self._path(RUN))
  best = property(lambda self: self._path(BEST))
  final = property(lambda self: self._path(FINAL))
  history = property(lambda self: self._path(HISTORY))
  logs = property(lambda self: self._path(LOGS))
  feature_cache = property(lambda self: self._path(FEATURE_CACHE))
  backup = property(lambda self: self._path(BACKUP))
  eval = property(lambda self: self._path(EVAL))
  runtimes = property(lambda self: self._path(RUNTIMES))
  operating_point = property(lambda self: self._path(EVAL, assessment.OPERATING_POINT))
  calibration = property(lambda self: self._path(EVAL, calibration.CALIBRATION))
  test_metrics = property(lambda self: self._path(EVAL, report.METRICS))

  def finished(self) -> bool:
    """Whether run.json says the run is done (a finished run is never trained into again)."""
    if not os.path.exists(self.run_json):
      return False
    with open(self.run_json) as f:
      return bool(json.load(f).get("finished"))

  def write_summary(self, summary: dict) -> None:
    """run.json, replaced whole: a kill leaves the old one or the new one."""
    checkpoints.write_json(self.run_json, summary)


def write_flags(folder: str, text: str) -> None:
  """Keeps a command's resolved flags in its folder, so `--flagfile` reproduces what it did."""
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, FLAGS), "w") as f:
    f.write(text)


def stored_operating_point(model_path) -> pathlib.Path | None:
  """The operating_point.json of the model's training run: beside the model file, or one folder down
  (a run's eval/), for applying a run's threshold to a dataset it was not trained on."""
  if model_path is None:
    return None
  folder = pathlib.Path(model_path).parent
  beside = folder / assessment.OPERATING_POINT
  if beside.exists():
    return beside
  below = sorted(folder.glob(f"*/{assessment.OPERATING_POINT}"))
  if len(below) > 1:
    raise ValueError(f"several operating points for {model_path}: {', '.join(map(str, below))}; "
                     "pass --threshold with the one to use")
  return below[0] if below else None


def is_run(model_path: str) -> bool:
  """Whether a model file sits in a training run's folder (a run.json beside it)."""
  return os.path.isfile(os.path.join(os.path.dirname(model_path), RUN))


@dataclasses.dataclass
class TrainedRun:
  """A finished training run, as evaluation, prediction and export need it: no dataset, only what it kept."""
  folder: RunFolder
  info: dict  # run.json
  model: keras.Model | None  # None when loaded without one (`load(..., with_model=False)`)
  model_path: str
  stored_size: int | None  # the dataset's stored side (with the model): new files are preprocessed to it
  operating_point: assessment.OperatingPoint | None  # as chosen on validation; None: not evaluated, or multi-class
  calibration: dict | None  # level -> calibration.Calibration fitted on validation
  test_metrics: dict | None  # eval/metrics.json of the run's test-split evaluation

  @property
  def identity(self) -> dict:
    """What every output made with this run names: dataset, version, model, the run."""
    name = self.info["dataset"]["name"]
    return {"dataset": name.rsplit("/", 1)[0], "dataset_version": self.info["dataset"]["version"],
            "model": self.model.name if self.model is not None else pathlib.Path(self.model_path).stem,
            "run": self.folder.root}


def load(folder: str, model_path: str | None = None, flag: str = "run", with_model: bool = True) -> TrainedRun:
  """A training run's folder and model (default: its best.keras), checked; one-line errors.

  With the model, sets the float32 policy: a loaded model predicts with the
  dtypes it was saved with, whatever the run trained under.

  Raises:
    errors.ConfigError: no run.json, an unreadable one, a missing model or a
      damaged operating point or calibration file, each named.
  """
  paths = RunFolder(str(folder))
  errors.check(os.path.isfile(paths.run_json), f"--{flag}={folder}: no {RUN}: pass a training run's workdir")
  try:
    with open(paths.run_json) as f:
      info = json.load(f)
    dataset = info["dataset"]
    dataset["name"]  # pylint: disable=pointless-statement
    # What a model is loaded and new files are preprocessed with; a card needs neither.
    needed = (len(dataset["classes"]), int(dataset["stored_size"])) if with_model else None
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise errors.ConfigError(f"{paths.run_json}: not a {RUN} of this version of mammo_train ({error!r})") from None
  model_path = str(model_path or paths.best)
  errors.check(os.path.isfile(model_path), f"--model={model_path}: no such file")
  model = stored_size = None
  if needed:
    classes, stored_size = needed
    keras.mixed_precision.set_global_policy("float32")
    model = classifiers.load(model_path, classes, flag="model")
  try:
    operating = (assessment.OperatingPoint.read(paths.operating_point)
                 if os.path.exists(paths.operating_point) else None)
    maps = calibration.load(paths.calibration) if os.path.exists(paths.calibration) else None
    tested = _read_metrics(paths.test_metrics) if os.path.exists(paths.test_metrics) else None
  except ValueError as error:
    raise errors.ConfigError(str(error)) from None
  return TrainedRun(paths, info, model, model_path, stored_size, operating, maps, tested)


def _read_metrics(path: str) -> dict:
  try:
    return json.loads(pathlib.Path(path).read_text())
  except ValueError as error:
    raise ValueError(f"{path}: not a metrics file ({error})") from None
