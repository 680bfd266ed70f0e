"""Searches dropout, L2 and the learning rate with Keras Tuner, on the trainer's own pipeline.

  python -m mammo_train.tune --dataset=cmmd --model=cnn --tuner=hyperband --max_epochs=20 \
      --workdir=runs/tune-cnn
  tensorboard --logdir=runs/tune-cnn     # the HParams tab compares the trials
  python -m mammo_train --flagfile=runs/tune-cnn/best.flags --workdir=runs/cnn-best
  python -m mammo_train.tune --helpfull

Every trainer flag (dataset, model, oversampling, precision, strategy, image
size, ...) means what it means to `python -m mammo_train`: models and
datasets come from the trainer's own functions. A searched hyperparameter
takes its value from the trial, not from its trainer flag.

The workdir holds search/ (Keras Tuner's oracle and one folder per trial),
logs/ (TensorBoard: one run per trial, with its hyperparameters for the
HParams dashboard), search.json (the settings, checked when the search is
resumed), trials.csv (the summary table) and best.flags (the best trial's
settings as a trainer flagfile, whose --workdir is <workdir>/best).
Rerunning the same command continues an interrupted search without redoing
finished trials; --overwrite starts over. A bad flag ends the run with one
line on stderr and exit status 2.
"""
import copy
import csv
import dataclasses
import json
import math
import os
import shutil
import sys
import time

from absl import app, flags
import keras
import keras_tuner as kt
from tensorboard.plugins.hparams import api as hparams_api
import tensorflow as tf

from mammo_train import config, data, models, train

# Each hyperparameter the search can tune (named like its trainer flag) -> its sampling.
HYPERPARAMETERS = {"dropout": "linear", "l2": "log", "learning_rate": "log"}
TUNERS = ("hyperband", "bayesian", "random")
DEFAULT_MAX_TRIALS = 10  # of random and Bayesian searches
OBJECTIVE = kt.Objective("val_auc", "max")
PROJECT = "search"  # Keras Tuner's folder in the workdir
LOGS = "logs"
SETTINGS = "search.json"
SUMMARY = "trials.csv"
BEST_FLAGS = "best.flags"
RECORD = "record.json"  # per trial: epochs and wall time, for the summary
# The summary's columns; epochs counts those a Hyperband trial's model had before it, seconds only its own.
COLUMNS = ("trial", "status", *HYPERPARAMETERS, "val_auc", "epochs", "seconds")

flags.DEFINE_enum("tuner", "hyperband", TUNERS, "Search algorithm: Hyperband, Bayesian optimisation "
                  "or random search; each maximises the validation AUC.")
flags.DEFINE_integer("max_epochs", None, "Epochs a trial trains at most (Hyperband gives most trials "
                     "fewer). Default: --epochs.")
flags.DEFINE_integer("max_trials", None, f"Trials to run. Default: {DEFAULT_MAX_TRIALS} for random and "
                     "bayesian; Hyperband runs its brackets in full unless this caps it.")
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband's reduction factor: each round keeps 1 in this "
                     "many trials and trains it this many times longer.")
flags.DEFINE_list("search", list(HYPERPARAMETERS), "Hyperparameters searched, from "
                  f"{','.join(HYPERPARAMETERS)}; the others take their trainer flag's value.")
flags.DEFINE_list("dropout_range", ["0", "0.6"], "MIN,MAX of the dropout searched (linear scale).")
flags.DEFINE_list("l2_range", ["1e-6", "1e-1"], "MIN,MAX of the L2 weight decay searched (log scale).")
flags.DEFINE_list("learning_rate_range", ["1e-5", "1e-2"], "MIN,MAX of the learning rate searched (log scale).")
flags.DEFINE_boolean("overwrite", False, "Delete the workdir's search and start over instead of resuming it.")


@dataclasses.dataclass(frozen=True)
class Search:
  """The tuner's settings, resolved from its flags."""
  tuner: str
  max_epochs: int
  max_trials: int | None  # None: Hyperband's full brackets
  hyperband_factor: int
  ranges: dict[str, tuple[float, float]]  # the searched hyperparameters' MIN, MAX


def _check(condition: bool, message: str):
  if not condition:
    raise config.ConfigError(message)


def _range(values: flags.FlagValues, name: str) -> tuple[float, float]:
  """--<name>_range as (MIN, MAX); a log-scale range must be positive, dropout's in [0, 1)."""
  raw = values[name + "_range"]
  flag = f"--{raw.name}={','.join(raw.value)}"
  try:
    low, high = (float(value) for value in raw.value)
  except ValueError:
    low = high = math.nan
  _check(math.isfinite(low) and math.isfinite(high),
         f"{flag}: expected two numbers MIN,MAX, e.g. {','.join(raw.default)}")
  _check(low < high, f"{flag}: MIN must be below MAX (to fix {name}, leave it out of --search and "
         f"pass --{name})")
  if HYPERPARAMETERS[name] == "log":
    _check(low > 0, f"{flag}: {name} is searched on a log scale, so MIN must be positive")
  else:
    _check(low >= 0 and high < 1, f"{flag}: dropout must be in [0, 1)")
  return low, high


def search_from_flags(values: flags.FlagValues, cfg: config.Config) -> Search:
  """The tuner's flags, checked; raises ConfigError on a bad value or combination."""
  searched = set(values.search)
  unknown = searched - set(HYPERPARAMETERS)
  _check(searched and not unknown, f"--search={','.join(values.search)}: expected one or more of "
         f"{','.join(HYPERPARAMETERS)}")
  for name in HYPERPARAMETERS:
    _check(name in searched or not values[name + "_range"].present,
           f"--{name}_range is given but {name} is not in --search={','.join(values.search)}")
  _check(not (cfg.init_from and searched & {"dropout", "l2"}),
         f"--init_from={cfg.init_from} brings its own dropout and L2: search only the learning rate "
         "(--search=learning_rate)")
  max_epochs = cfg.epochs if values.max_epochs is None else values.max_epochs
  _check(max_epochs >= 1, f"--max_epochs must be at least 1, got {max_epochs}")
  _check(values.max_trials is None or values.max_trials >= 1,
         f"--max_trials must be at least 1, got {values.max_trials}")
  _check(values.tuner == "hyperband" or not values["hyperband_factor"].present,
         f"--hyperband_factor applies to --tuner=hyperband, not --tuner={values.tuner}")
  _check(values.hyperband_factor >= 2, f"--hyperband_factor must be at least 2, got {values.hyperband_factor}")
  max_trials = values.max_trials
  if max_trials is None and values.tuner != "hyperband":
    max_trials = DEFAULT_MAX_TRIALS
  return Search(tuner=values.tuner, max_epochs=max_epochs, max_trials=max_trials,
                hyperband_factor=values.hyperband_factor,
                ranges={name: _range(values, name) for name in HYPERPARAMETERS if name in searched})


class HyperModel(kt.HyperModel):
  """The trainer's model and compile, with the trial's dropout, L2 and learning rate."""

  def __init__(self, cfg: config.Config, search: Search, image_size: int, classes: int, precision: str):
    super().__init__()
    self.cfg = cfg
    self.search = search
    self.image_size = image_size
    self.classes = classes
    self.precision = precision

  def value(self, hp: kt.HyperParameters, name: str) -> float:
    """A searched hyperparameter's trial value; an unsearched one's trainer flag value, recorded
    as Fixed so every trial's summary and HParams row shows all three."""
    if name not in self.search.ranges:
      return hp.Fixed(name, getattr(self.cfg, name))
    low, high = self.search.ranges[name]
    return hp.Float(name, low, high, sampling=HYPERPARAMETERS[name])

  def build(self, hp: kt.HyperParameters) -> keras.Model:
    # Keras Tuner clears the session before each trial, and that resets the dtype policy.
    keras.mixed_precision.set_global_policy(self.precision)
    keras.utils.set_random_seed(self.cfg.seed)
    dropout, l2, learning_rate = (self.value(hp, name) for name in HYPERPARAMETERS)
    if self.cfg.init_from:
      model = models.load(self.cfg.init_from, self.image_size, self.classes, self.cfg.model)
    else:
      model = models.build(self.cfg.model, self.image_size, self.classes, self.cfg.weights, dropout, l2)
    models.set_fine_tune(model, self.cfg.fine_tune_layers)
    train.compile_model(model, self.classes, learning_rate)
    # Built now, so a Hyperband trial that carries on an earlier one's checkpoint
    # restores the optimizer's state with the weights, and trains as if never stopped.
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


def make_tuner(search: Search, hypermodel: HyperModel, strategy: tf.distribute.Strategy, workdir: str,
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


def start_or_resume(cfg: config.Config, search: Search, overwrite: bool) -> bool:
  """Starts a search in the workdir, or checks that the one there has the same
  settings (all but --max_trials); returns whether it resumes one."""
  settings = {"trainer": dataclasses.asdict(cfg), "search": dataclasses.asdict(search)}
  del settings["trainer"]["workdir"], settings["search"]["max_trials"]
  settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
  path = os.path.join(cfg.workdir, SETTINGS)
  if overwrite:
    for name in (PROJECT, LOGS):
      shutil.rmtree(os.path.join(cfg.workdir, name), ignore_errors=True)
    for name in (SETTINGS, SUMMARY, BEST_FLAGS):
      if os.path.exists(os.path.join(cfg.workdir, name)):
        os.remove(os.path.join(cfg.workdir, name))
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    changed = [f"{part}.{key}" for part in settings for key in settings[part]
               if settings[part][key] != before[part].get(key)]
    _check(not changed, f"--workdir={cfg.workdir} holds a search with other settings "
           f"({', '.join(changed)}): rerun it with its own flags, or pass --overwrite to start over")
    return True
  os.makedirs(cfg.workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(settings, f, indent=2)
  return False


def write_hparams_experiment(logdir: str, cfg: config.Config, search: Search):
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


def best_flagfile(values: flags.FlagValues, best: dict, workdir: str) -> str:
  """The trainer flags of the search with the best trial's hyperparameters and
  epochs, training into <workdir>/best unless --workdir is given after it."""
  chosen = copy.deepcopy(values)
  for name in HYPERPARAMETERS:
    chosen[name].value = best[name]
  chosen["epochs"].value = best["epochs"]
  chosen["workdir"].value = os.path.join(workdir, "best")
  return config.flagfile(chosen)


def run(values: flags.FlagValues) -> list[dict]:
  """Runs or resumes the search the flags describe; writes its summary and best.flags.

  Returns:
    The summary rows, the best trial first.
  """
  cfg = config.from_flags(values)
  search = search_from_flags(values, cfg)
  builder = data.load_builder(cfg.dataset, cfg.data_dir)
  resuming = start_or_resume(cfg, search, values.overwrite)
  keras.utils.set_random_seed(cfg.seed)
  if cfg.deterministic:
    tf.config.experimental.enable_op_determinism()
  image_size = cfg.image_size or builder.info.features["image"].shape[0]
  classes = data.num_classes(builder)
  precision = train.resolve_precision(cfg.precision)
  strategy = train.make_strategy(cfg.strategy)
  global_batch = cfg.batch_size * strategy.num_replicas_in_sync
  counts = data.class_counts(builder)
  train_batches = data.train_batches(
      builder, image_size=image_size, global_batch_size=global_batch, augmentation=cfg.augmentation,
      oversample=cfg.oversample, cache=cfg.cache, seed=cfg.seed, deterministic=cfg.deterministic)
  validation = data.validation_batches(builder, image_size=image_size, global_batch_size=global_batch,
                                       cache=cfg.cache)

  hypermodel = HyperModel(cfg, search, image_size, classes, precision)
  logs = os.path.join(cfg.workdir, LOGS)
  if not resuming:
    write_hparams_experiment(logs, cfg, search)
  tuner = make_tuner(search, hypermodel, strategy, cfg.workdir, cfg.seed)
  tuner.search(
      train_batches, validation_data=validation, epochs=search.max_epochs,
      steps_per_epoch=data.steps_per_epoch(builder, global_batch), shuffle=False,
      class_weight=data.balancing_class_weights(counts) if cfg.class_weights else None,
      callbacks=[keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=train.LR_FACTOR,
                                                   patience=train.LR_PATIENCE),
                 # Keras Tuner gives each trial its own folder under this one, with its hyperparameters.
                 keras.callbacks.TensorBoard(logs, write_graph=cfg.tensorboard_graph)],
      verbose=2)

  rows = summary_rows(tuner)
  with open(os.path.join(cfg.workdir, SUMMARY), "w", newline="") as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  if rows and rows[0]["status"] == "COMPLETED":
    with open(os.path.join(cfg.workdir, BEST_FLAGS), "w") as f:
      f.write(best_flagfile(values, rows[0], cfg.workdir))
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    rows = run(flags.FLAGS)
  except (config.ConfigError, data.DatasetNotBuiltError) as error:
    print(f"mammo_train.tune: error: {error}", file=sys.stderr)
    sys.exit(2)
  workdir = flags.FLAGS.workdir
  print(format_table(rows))
  print(f"summary: {os.path.join(workdir, SUMMARY)}")
  if not (rows and rows[0]["status"] == "COMPLETED"):
    print("no trial completed: see the errors above", file=sys.stderr)
    sys.exit(1)
  print(f"best: trial {rows[0]['trial']}, validation AUC {rows[0]['val_auc']:.4f}; train it with "
        f"python -m mammo_train --flagfile={os.path.join(workdir, BEST_FLAGS)}")


if __name__ == "__main__":
  app.run(main)
