"""`python -m mammo_train.tune`'s flags (the trainer's, plus the search's) and the `Tune` config."""
import copy
import dataclasses
import math
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import check, flagfile, flag_names
from mammo_train.config.train import TRAIN_FLAGS, Train, define_train_flags, train_from_flags

# The searched hyperparameters (named like their trainer flags) -> sampling scale.
HYPERPARAMETERS = {"dropout": "linear", "l2": "log", "learning_rate": "log"}
SEARCH_RANGES = {"dropout": ("0", "0.6"), "l2": ("1e-6", "1e-1"), "learning_rate": ("1e-5", "1e-2")}
TUNERS = ("hyperband", "bayesian", "random")
DEFAULT_MAX_TRIALS = 10  # of random and Bayesian searches


@dataclasses.dataclass(frozen=True, kw_only=True)
class Search:
  """The tuner's own settings, resolved from its flags."""
  tuner: str = flag("hyperband", "Search algorithm: Hyperband, Bayesian optimisation or random search; each "
                    "maximises the validation AUC.", enum=TUNERS)
  max_epochs: int = flag(None, "Epochs a trial trains at most (Hyperband gives most trials fewer). Default: "
                         "--epochs.")
  # None once resolved: Hyperband's full brackets.
  max_trials: int | None = flag(None, f"Trials to run. Default: {DEFAULT_MAX_TRIALS} for random and bayesian; "
                                "Hyperband runs its brackets in full unless this caps it.")
  hyperband_factor: int = flag(3, "Hyperband's reduction factor: each round keeps 1 in this many trials and "
                               "trains it this many times longer.")
  ranges: dict  # the searched hyperparameters' (MIN, MAX), from --search and the --<name>_range flags


@dataclasses.dataclass(frozen=True, kw_only=True)
class Tune:
  train: Train  # the trainer settings every trial uses; searched ones take the trial's values
  search: Search
  overwrite: bool = flag(False, "Delete the workdir's search and start over instead of resuming it.")


def define_tune_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags, plus the search's: Search's and Tune's, and which hyperparameters in what ranges."""
  define_train_flags(values)
  fields.define(Search, values)
  fields.define(Tune, values)
  flags.DEFINE_list("search", list(HYPERPARAMETERS), "Hyperparameters searched, from "
                    f"{','.join(HYPERPARAMETERS)}; the others take their trainer flag's value.", flag_values=values)
  for name, default in SEARCH_RANGES.items():
    flags.DEFINE_list(f"{name}_range", list(default), f"MIN,MAX of the {name} searched ({HYPERPARAMETERS[name]} "
                      "scale).", flag_values=values)


def _range(values: flags.FlagValues, name: str) -> tuple:
  """--<name>_range as (MIN, MAX); a log-scale range must be positive, dropout's in [0, 1)."""
  raw = values[name + "_range"]
  flag = f"--{raw.name}={','.join(raw.value)}"
  try:
    low, high = (float(value) for value in raw.value)
  except ValueError:
    low = high = math.nan
  check(math.isfinite(low) and math.isfinite(high),
        f"{flag}: expected two numbers MIN,MAX, e.g. {','.join(raw.default)}")
  check(low < high, f"{flag}: MIN must be below MAX (to fix {name}, leave it out of --search and pass --{name})")
  if HYPERPARAMETERS[name] == "log":
    check(low > 0, f"{flag}: {name} is searched on a log scale, so MIN must be positive")
  else:
    check(low >= 0 and high < 1, f"{flag}: dropout must be in [0, 1)")
  return low, high


def tune_from_flags(values: flags.FlagValues = flags.FLAGS) -> Tune:
  """The tuner's config; raises ConfigError on a bad value or combination."""
  searched = set(values.search)
  check(searched and not searched - set(HYPERPARAMETERS),
        f"--search={','.join(values.search)}: expected one or more of {','.join(HYPERPARAMETERS)}")
  for name in HYPERPARAMETERS:
    check(name in searched or not values[name + "_range"].present,
          f"--{name}_range is given but {name} is not in --search={','.join(values.search)}")
  ranges = {name: _range(values, name) for name in HYPERPARAMETERS if name in searched}
  check(values.tuner == "hyperband" or not values["hyperband_factor"].present,
        f"--hyperband_factor applies to --tuner=hyperband, not --tuner={values.tuner}")
  check(values.hyperband_factor >= 2, f"--hyperband_factor must be at least 2, got {values.hyperband_factor}")
  check(values.max_trials is None or values.max_trials >= 1,
        f"--max_trials must be at least 1, got {values.max_trials}")
  check(values.max_epochs is None or values.max_epochs >= 1,
        f"--max_epochs must be at least 1, got {values.max_epochs}")
  train = train_from_flags(values)
  check(not (train.init_from and searched & {"dropout", "l2"}),
        f"--init_from={train.init_from} brings its own dropout and L2: search only the learning rate "
        "(--search=learning_rate)")
  max_trials = values.max_trials
  if max_trials is None and values.tuner != "hyperband":
    max_trials = DEFAULT_MAX_TRIALS
  search = fields.read(Search, values, max_epochs=values.max_epochs or train.epochs, max_trials=max_trials,
                       ranges=ranges)
  return fields.read(Tune, values, train=train, search=search)


TUNE_FLAGS = flag_names(define_tune_flags)


def trial_flagfile(values: flags.FlagValues, trial: dict, workdir: str) -> str:
  """The trainer flags of a search with one trial's hyperparameters and epochs, training into
  <workdir>/best unless --workdir is given after it."""
  chosen = copy.deepcopy(values)
  for name in HYPERPARAMETERS:
    chosen[name].value = trial[name]
  chosen["epochs"].value = trial["epochs"]
  chosen["workdir"].value = os.path.join(workdir, "best")
  return flagfile(chosen, TRAIN_FLAGS)
