"""Every command's flags, and the frozen configs they resolve to: one module per command.

Each command (`python -m mammo_train`, `.tune`, `.cv`, `.evaluate`, `.baselines`,
`.predict`, `.export`, `.compare`) defines its flags with `define_<command>_flags` and
resolves them once with `<command>_from_flags` into a frozen, validated
dataclass; nothing below a command reads absl flags. Each flag is declared
once, on its config field (`fields.flag`: name, type, default, help), from
which `define_<command>_flags` defines it and `<command>_from_flags` reads it.
A command's config lives in `config/<command>.py` (the trainer's in
`train.py`); what several commands share is declared once, in `shared.py`. A
new command adds its module here and its names below. A bad value or combination raises `ConfigError`, which
`mammo_train.cli` prints as one line with exit status 2.
"""
from mammo_train.config.baselines import BASELINES_FLAGS, Baselines, baselines_from_flags, define_baselines_flags
from mammo_train.config.compare import COMPARE_FLAGS, Compare, compare_from_flags, define_compare_flags
from mammo_train.config.cv import CV_FLAGS, CrossValidation, cv_from_flags, define_cv_flags
from mammo_train.config.evaluate import EVALUATE_FLAGS, Evaluate, define_evaluate_flags, evaluate_from_flags
from mammo_train.config.export import EXPORT_FLAGS, Export, define_export_flags, export_from_flags
from mammo_train.config.predict import PREDICT_FLAGS, Predict, define_predict_flags, predict_from_flags
from mammo_train.config.shared import (BASELINES, EXPORT_FORMATS, MODELS, PRECISIONS, RUNTIMES, STRATEGIES,
                                       THRESHOLD_RULES, ConfigError, Protocol, check, flagfile)
from mammo_train.config.train import TRAIN_FLAGS, Train, define_train_flags, train_from_flags
from mammo_train.config.tune import (DEFAULT_MAX_TRIALS, HYPERPARAMETERS, SEARCH_RANGES, TUNE_FLAGS, TUNERS, Search,
                                     Tune, define_tune_flags, trial_flagfile, tune_from_flags)
