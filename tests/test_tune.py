"""The hyperparameter search: flags, resuming, HParams logs, best.flags, the three tuners."""
import csv
import glob
import hashlib
import json
import os
import pathlib
import subprocess
import sys

from absl import flags
import keras
import keras_tuner as kt
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2

from mammo_train import config
from mammo_train.training import runtime, search

REPO = pathlib.Path(__file__).resolve().parents[1]
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


class Interrupted(BaseException):
  """Stands for a kill: Keras Tuner catches Exceptions (a failed trial), not this."""


def _kill(epoch, logs):
  del epoch, logs
  raise Interrupted


def _flags(workdir, data_dir, *args) -> flags.FlagValues:
  """Fresh flag values, as `python -m mammo_train.tune` would parse them, on synthetic/tiny."""
  values = flags.FlagValues()
  config.define_tune_flags(values)
  values(["tune", "--dataset=synthetic/tiny", f"--data_dir={data_dir}", f"--workdir={workdir}",
          "--image_size=32", "--max_epochs=1", *args])
  return values


def _search(values: flags.FlagValues) -> list[dict]:
  """The search as `python -m mammo_train.tune` runs it on these flags (without its printing)."""
  cfg = config.tune_from_flags(values)
  return search.run(cfg, config.flagfile(values, config.TUNE_FLAGS),
                    lambda trial: config.trial_flagfile(values, trial, cfg.train.workdir))


@pytest.fixture
def trials_run(monkeypatch):
  """Records each trial the tuners start: its id and the replicas it trains on."""
  ran = []
  run_trial = search._RecordedTrials.run_trial  # pylint: disable=protected-access

  def recorded(self, trial, *args, **kwargs):
    ran.append((trial.trial_id, self.distribution_strategy.num_replicas_in_sync))
    return run_trial(self, trial, *args, **kwargs)
  monkeypatch.setattr(search._RecordedTrials, "run_trial", recorded)  # pylint: disable=protected-access
  return ran


@pytest.mark.parametrize("args, message", [
    (["--dropout_range=0.6,0.1"], r"--dropout_range=0.6,0.1: MIN must be below MAX"),
    (["--l2_range=-1e-3,1e-1"], r"--l2_range=-1e-3,1e-1: l2 is searched on a log scale, so MIN must be positive"),
    (["--learning_rate_range=0,1e-2"], r"learning_rate is searched on a log scale"),
    (["--dropout_range=0,1.5"], r"dropout must be in \[0, 1\)"),
    (["--l2_range=1e-6"], r"--l2_range=1e-6: expected two numbers MIN,MAX, e.g. 1e-6,1e-1"),
    (["--search=dropout,momentum"], r"--search=dropout,momentum: expected one or more of dropout,l2,learning_rate"),
    (["--search=dropout", "--l2_range=1e-5,1e-3"], r"--l2_range is given but l2 is not in --search=dropout"),
    (["--tuner=random", "--hyperband_factor=2"], r"--hyperband_factor applies to --tuner=hyperband"),
    (["--max_trials=0"], r"--max_trials must be at least 1"),
])
def test_bad_search_flags_are_refused(tmp_path, args, message):
  with pytest.raises(config.ConfigError, match=message):
    _search(_flags(tmp_path / "run", tmp_path / "tfds", *args))
  assert not (tmp_path / "run").exists()


def test_bad_range_is_one_line_on_the_command_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "mammo_train.tune", f"--workdir={tmp_path}", "--dropout_range=0.6,0.1"],
      cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if "error" in line]
  assert errors == ["mammo_train.tune: error: --dropout_range=0.6,0.1: MIN must be below MAX (to fix dropout, "
                    "leave it out of --search and pass --dropout)"], result.stderr


@pytest.fixture(scope="module")
def resumed_search(tiny_data_dir, tmp_path_factory):
  """A 3-trial random search killed during its second trial, then rerun with the same flags.

  Returns the workdir, the trials each run started, and trial 0's record as
  the first run left it (path, content hash).
  """
  workdir = tmp_path_factory.mktemp("tune") / "random"
  args = (workdir, tiny_data_dir, "--tuner=random", "--max_trials=3")
  run_trial = search._RecordedTrials.run_trial  # pylint: disable=protected-access
  started = {"first": [], "second": []}

  def killed_at_trial_1(self, trial, *args, **kwargs):
    started["first"].append(trial.trial_id)
    if trial.trial_id == "1":  # killed once its first epoch is logged
      kwargs["callbacks"] = kwargs["callbacks"] + [keras.callbacks.LambdaCallback(on_epoch_end=_kill)]
    return run_trial(self, trial, *args, **kwargs)

  def recorded(self, trial, *args, **kwargs):
    started["second"].append(trial.trial_id)
    return run_trial(self, trial, *args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(search._RecordedTrials, "run_trial", killed_at_trial_1)  # pylint: disable=protected-access
    with pytest.raises(Interrupted):
      _search(_flags(*args))
    record = workdir / search.PROJECT / "trial_0" / search.RECORD
    digest = hashlib.sha256(record.read_bytes()).hexdigest()
    patch.setattr(search._RecordedTrials, "run_trial", recorded)  # pylint: disable=protected-access
    rows = _search(_flags(*args))
  return workdir, started, rows, (record, digest)


def test_interrupted_search_resumes_without_repeating_finished_trials(resumed_search):
  workdir, started, rows, (record, digest) = resumed_search
  assert started == {"first": ["0", "1"], "second": ["1", "2"]}  # trial 0 is not run again
  assert hashlib.sha256(record.read_bytes()).hexdigest() == digest
  with open(workdir / search.SUMMARY) as f:
    table = list(csv.DictReader(f))
  assert sorted(row["trial"] for row in table) == ["0", "1", "2"]
  assert all(row["status"] == "COMPLETED" and row["epochs"] == "1" and row["seconds"] for row in table)
  assert [row["trial"] for row in table] == [row["trial"] for row in rows]
  aucs = [float(row["val_auc"]) for row in table]
  assert aucs == sorted(aucs, reverse=True)
  for row in table:
    assert 0 <= float(row["dropout"]) <= 0.6 and 1e-6 <= float(row["l2"]) <= 1e-1
    assert 1e-5 <= float(row["learning_rate"]) <= 1e-2


def _hparams_sessions(logdir: pathlib.Path) -> list[dict]:
  """The hyperparameters of each session start written in `logdir` (not below it)."""
  sessions = []
  for path in glob.glob(str(logdir / "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == hparams_metadata.SESSION_START_INFO_TAG:
          content = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
          sessions.append({name: hp.number_value for name, hp in content.session_start_info.hparams.items()})
  return sessions


def test_each_trial_logs_its_hyperparameters_for_the_hparams_dashboard(resumed_search):
  workdir, _, rows, _ = resumed_search
  for row in rows:
    # One session per trial: the retried trial 1's logs start over.
    assert _hparams_sessions(workdir / search.LOGS / row["trial"] / "execution0") == [
        {name: pytest.approx(row[name]) for name in search.HYPERPARAMETERS}]
    assert glob.glob(str(workdir / search.LOGS / row["trial"] / "execution0" / "validation" / "events.*"))


def test_best_flags_train_the_best_trial_through_the_trainer(resumed_search):
  workdir, _, rows, _ = resumed_search
  best = rows[0]
  lines = (workdir / search.BEST_FLAGS).read_text().splitlines()
  for name in search.HYPERPARAMETERS:
    assert f"--{name}={best[name]!r}" in lines
  assert "--epochs=1" in lines and "--image_size=32" in lines and f"--workdir={workdir / 'best'}" in lines
  result = subprocess.run([sys.executable, "-m", "mammo_train", f"--flagfile={workdir / search.BEST_FLAGS}"],
                          cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  assert (workdir / "best" / "final.keras").exists()


def test_hyperband_continues_trials_under_a_mirrored_strategy(tiny_data_dir, tmp_path, trials_run):
  # max_epochs 2, factor 2: trials 0 and 1 train 1 epoch, trial 2 takes the better one on to 2.
  rows = _search(_flags(tmp_path, tiny_data_dir, "--strategy=mirrored", "--max_epochs=2",
                         "--hyperband_factor=2", "--max_trials=3", "--search=dropout,learning_rate"))
  assert trials_run == [("0", 2), ("1", 2), ("2", 2)]  # conftest splits the CPU in two
  assert all(row["status"] == "COMPLETED" for row in rows)
  assert {row["trial"]: row["epochs"] for row in rows} == {"0": 1, "1": 1, "2": 2}
  assert all(row["l2"] == 1e-4 for row in rows)  # not searched: the trainer's --l2
  with open(tmp_path / search.PROJECT / "trial_2" / "trial.json") as f:
    continued = json.load(f)["hyperparameters"]["values"]
  assert continued["tuner/trial_id"] in ("0", "1") and continued["tuner/initial_epoch"] == 1
  assert "--strategy=mirrored" in (tmp_path / search.BEST_FLAGS).read_text().splitlines()


def test_other_settings_need_overwrite(tiny_data_dir, tmp_path, trials_run):
  args = (tmp_path, tiny_data_dir, "--tuner=bayesian", "--max_trials=1", "--search=learning_rate")
  _search(_flags(*args))
  with pytest.raises(config.ConfigError, match=r"holds a search with other settings \(search.ranges\).*--overwrite"):
    _search(_flags(*args, "--learning_rate_range=1e-4,1e-3"))
  rows = _search(_flags(*args, "--learning_rate_range=1e-4,1e-3", "--overwrite"))
  assert trials_run == [("0", 1), ("0", 1)]  # started over: trial 0 again, in the new range
  assert len(rows) == 1 and 1e-4 <= rows[0]["learning_rate"] <= 1e-3


def test_every_trial_model_gets_the_precision_policy(tiny_data_dir, tmp_path):
  cfg = config.tune_from_flags(_flags(tmp_path, tiny_data_dir, "--precision=mixed_bfloat16"))
  prepared = runtime.set_up_training(cfg.train)
  hypermodel = search.HyperModel(prepared, cfg.train, cfg.search)
  keras.backend.clear_session()  # as Keras Tuner does before each trial: it resets the policy
  try:
    model = hypermodel.build(kt.HyperParameters())
    assert model.get_layer("dense").dtype_policy.name == "mixed_bfloat16"
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_a_frozen_backbone_search_trains_every_trial_on_one_feature_cache(tiny_data_dir, tmp_path, monkeypatch):
  computed = []
  compute = runtime.feature_cache.compute
  monkeypatch.setattr(runtime.feature_cache, "compute",
                      lambda *args, **kwargs: computed.append(args[0]) or compute(*args, **kwargs))
  rows = _search(_flags(tmp_path, tiny_data_dir, "--model=resnet50", "--weights=none", "--fine_tune_layers=0",
                         "--tuner=random", "--max_trials=2", "--search=dropout,learning_rate"))
  assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"]
  assert computed == [str(tmp_path / "feature_cache")]  # once for the whole search
  caches = [name for name in os.listdir(tmp_path / "feature_cache") if name != "runtimes"]  # beside: a conversion
  assert len(caches) == 1
  trial = json.loads((tmp_path / search.PROJECT / "trial_0" / "trial.json").read_text())
  assert trial["status"] == "COMPLETED"
