"""The hyperparameter search of `python -m mammo_train.tune`: dropout, L2 and the learning rate with
Keras Tuner, on the trainer's own pipeline.

Every trainer flag (dataset, model, oversampling, precision, strategy, image
size, feature cache, ...) means what it means to `python -m mammo_train`:
the search is set up by the same `runtime` as a training run. A searched
hyperparameter takes its value from the trial, not from its trainer flag.
With a frozen backbone, the backbone's features are computed once into
<workdir>/feature_cache and every trial trains the head on them.

The workdir holds search/ (Keras Tuner's oracle and one folder per trial),
logs/ (TensorBoard: one run per trial, with its hyperparameters for the
HParams dashboard), search.json (the settings, checked when the search is
resumed), flags.txt (the search's own flags), trials.csv (the summary
table) and best.flags (the best trial's
settings as a trainer flagfile, whose --workdir is <workdir>/best).
Rerunning the same command continues an interrupted search without redoing
finished trials; --overwrite starts over. A bad flag ends the run with one
line on stderr and exit status 2.
"""
import csv
import dataclasses
import json
import os
import shutil
import time
from typing import Callable

import keras
import keras_tuner as kt
from tensorboard.plugins.hparams import api as hparams_api
import tensorflow as tf

from mammo_train import config, run_folder
from mammo_train.training import loop, runtime

HYPERPARAMETERS = config.HYPERPARAMETERS
OBJECTIVE = kt.Objective("val_auc", "max")
PROJECT = "search"  # Keras Tuner's folder in the workdir
LOGS = "logs"
SETTINGS = "search.json"
SUMMARY = "trials.csv"
BEST_FLAGS = "best.flags"
RECORD = "record.json"  # per trial: epochs and wall time, for the summary
# The summary's columns; epochs counts those a Hyperband trial's model had before it, seconds only its own.
COLUMNS = ("trial", "status", *HYPERPARAMETERS, "val_auc", "epochs", "seconds")

class HyperModel(kt.HyperModel):
  """The trainer's model and compile, with the trial's dropout, L2 and learning rate.

  With a frozen backbone on the feature cache, a trial trains the head alone
  on features computed once for the whole search: none of the searched
  hyperparameters (dropout, L2 of the output layer, learning rate) changes
  the backbone's features, so every trial shares one cache.
  """

  def __init__(self, run: runtime.Run, cfg: config.Train, search: config.Search):
    super().__init__()
    self.run, self.cfg, self.search = run, cfg, search

  def value(self, hp: kt.HyperParameters, name: str) -> float:
    """A searched hyperparameter's trial value; an unsearched one's trainer flag value, recorded
    as Fixed so every trial's summary and HParams row shows all three."""
    if name not in self.search.ranges:
      return hp.Fixed(name, getattr(self.cfg, name))
    low, high = self.search.ranges[name]
    return hp.Float(name, low, high, sampling=HYPERPARAMETERS[name])

  def build(self, hp: kt.HyperParameters) -> keras.Model:
    # Keras Tuner clears the session before each trial, and that resets the dtype policy.
    keras.mixed_precision.set_global_policy(self.run.precision)
    keras.utils.set_random_seed(self.cfg.seed)
    dropout, l2, learning_rate = (self.value(hp, name) for name in HYPERPARAMETERS)
    model = runtime.build_model(self.run, self.cfg, dropout=dropout, l2=l2, learning_rate=learning_rate)
    model = runtime.trained_part(self.run, self.cfg, model, learning_rate)
    # Built now, so a Hyperband trial that carries on an earlier one's checkpoint
    # restores the optimizer's state with the weights, and trains as if never stopped.
    with self.run.strategy.scope():
      model.optimizer.build(model.trainable_variables)
    return model


class _RecordedTrials:
  """Mixed into each tuner: a trial starts with empty logs (a retried trial's
  partial ones would mix with its new ones), and leaves the epochs its model
  has trained and its wall time beside its checkpoint, for the summary."""

  def run_trial(self, trial, *args, **kwargs):
    shutil.rmtree(os.path.join(self.directory, LOGS, trial.trial_id), ignore_errors=True)
    start = time.monotonic()
    histories = super().run_trial(trial, *args, **kwargs)
    record = {"epochs": histories[-1].epoch[-1] + 1, "seconds": round(time.monotonic() - start, 1)}
    with open(os.path.join(self.get_trial_dir(trial.trial_id), RECORD), "w") as f:
      json.dump(record, f)
    return histories


class Hyperband(_RecordedTrials, kt.Hyperband):
  pass


class BayesianOptimization(_RecordedTrials, kt.BayesianOptimization):
  pass


class RandomSearch(_RecordedTrials, kt.RandomSearch):
  pass


def make_tuner(search: config.Search, hypermodel: HyperModel, strategy: tf.distribute.Strategy, workdir: str,
               seed: int) -> kt.Tuner:
  """The chosen tuner over the workdir; it reloads a search already there."""
  common = dict(hypermodel=hypermodel, objective=OBJECTIVE, seed=seed, directory=workdir,
                project_name=PROJECT, distribution_strategy=strategy)
  if search.tuner == "hyperband":
    tuner = Hyperband(max_epochs=search.max_epochs, factor=search.hyperband_factor, **common)
    tuner.oracle.max_trials = search.max_trials  # Hyperband takes no max_trials; its oracle obeys one
    return tuner
  tuner_class = BayesianOptimization if search.tuner == "bayesian" else RandomSearch
  return tuner_class(max_trials=search.max_trials, **common)


def start_or_resume(cfg: config.Tune) -> bool:
  """Starts a search in the workdir, or checks that the one there has the same
  settings (all but --max_trials); returns whether it resumes one."""
  settings = {"trainer": dataclasses.asdict(cfg.train), "search": dataclasses.asdict(cfg.search)}
  del settings["trainer"]["workdir"], settings["search"]["max_trials"]
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
  workdir = cfg.train.workdir
  path = os.path.join(workdir, SETTINGS)
  if cfg.overwrite:
    for name in (PROJECT, LOGS):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in (SETTINGS, SUMMARY, BEST_FLAGS):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    changed = [f"{part}.{key}" for part in settings for key in settings[part]
               if settings[part][key] != before[part].get(key)]
    config.check(not changed, f"--workdir={workdir} holds a search with other settings "
                 f"({', '.join(changed)}): rerun it with its own flags, or pass --overwrite to start over")
    return True
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(settings, f, indent=2)
  return False


def write_hparams_experiment(logdir: str, cfg: config.Train, search: config.Search):
  """Declares the hyperparameters and metrics the HParams dashboard compares
  (each trial's own values are written by Keras Tuner into its run)."""
  hparams = [hparams_api.HParam(name, hparams_api.RealInterval(*search.ranges[name]) if name in search.ranges
                                else hparams_api.Discrete([getattr(cfg, name)])) for name in HYPERPARAMETERS]
  metrics = [hparams_api.Metric("epoch_auc", group="validation", display_name="validation AUC"),
             hparams_api.Metric("epoch_loss", group="validation", display_name="validation loss")]
  with tf.summary.create_file_writer(logdir).as_default():
    hparams_api.hparams_config(hparams=hparams, metrics=metrics)


def summary_rows(tuner: kt.Tuner) -> list[dict]:
  """One row per trial (COLUMNS), the best validation AUC first."""
  rows = []
  for trial in tuner.oracle.trials.values():
    record_path = os.path.join(tuner.get_trial_dir(trial.trial_id), RECORD)
    record = {}
    if os.path.exists(record_path):
      with open(record_path) as f:
        record = json.load(f)
    rows.append({"trial": trial.trial_id, "status": trial.status,
                 **{name: trial.hyperparameters.values.get(name) for name in HYPERPARAMETERS},
                 "val_auc": trial.score, **record})
  return sorted(rows, key=lambda row: (row["status"] != "COMPLETED", -(row["val_auc"] or 0), row["trial"]))


def format_table(rows: list[dict]) -> str:
  def cell(value):
    if isinstance(value, float):
      return f"{value:.4g}"
    return "" if value is None else str(value)
  cells = [COLUMNS] + [[cell(row.get(column)) for column in COLUMNS] for row in rows]
  widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
  return "\n".join("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip()
                   for line in cells)


def run(cfg: config.Tune, flagfile: str, best_flagfile: Callable[[dict], str]) -> list[dict]:
  """Runs or resumes the search; writes its summary and best.flags.

  Args:
    cfg: the search's config.
    flagfile: the search's own flags as --flagfile text, kept in the workdir.
    best_flagfile: a summary row -> the trainer flagfile that trains that trial
      (`config.trial_flagfile`), written as best.flags for the best trial.

  Returns:
    The summary rows, the best trial first.
  """
  workdir = cfg.train.workdir
  prepared = runtime.set_up_training(cfg.train)
  resuming = start_or_resume(cfg)
  run_folder.write_flags(workdir, flagfile)
  # The inputs of every trial, made once: with a frozen backbone, the features cached for the whole search.
  extractor_source = runtime.build_model(prepared, cfg.train) if runtime.uses_feature_cache(cfg.train) else None
  train_batches, validation = runtime.training_inputs(prepared, cfg.train, extractor_source,
                                                      run_folder.RunFolder(workdir).feature_cache)
  logs = os.path.join(workdir, LOGS)
  if not resuming:
    write_hparams_experiment(logs, cfg.train, cfg.search)
  tuner = make_tuner(cfg.search, HyperModel(prepared, cfg.train, cfg.search), prepared.strategy, workdir,
                     cfg.train.seed)
  tuner.search(
      train_batches, validation_data=validation, epochs=cfg.search.max_epochs,
      callbacks=[loop.lr_schedule(),
                 # Keras Tuner gives each trial its own folder under this one, with its hyperparameters.
                 keras.callbacks.TensorBoard(logs, write_graph=cfg.train.tensorboard_graph)],
      verbose=2, **runtime.fit_arguments(prepared))

  rows = summary_rows(tuner)
  with open(os.path.join(workdir, SUMMARY), "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  if rows and rows[0]["status"] == "COMPLETED":
    with open(os.path.join(workdir, BEST_FLAGS), "w") as f:
      f.write(best_flagfile(rows[0]))
  return rows
