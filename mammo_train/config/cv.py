"""`python -m mammo_train.cv`'s flags: every trainer flag, passed through to each fold, plus the folds."""
import dataclasses

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import check, flag_names, require_positive
from mammo_train.config.train import Train, define_train_flags, train_from_flags


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrossValidation:
  """Each fold's training config (its workdir and data are set per fold) and the folds."""
  train: Train
  folds: int = flag(5, "Folds K: patients (and identical-pixel groups) are assigned to K folds, stratified by "
                    "their highest label; fold k is scored by a model trained on the others, fold (k+1) mod K "
                    "choosing its epoch, threshold and calibration.")
  include_test: bool = flag(False, "Cross-validate over the test split too (default: the train and validation "
                            "splits only; no test image is decoded or scored, the reporting checklist's leakage "
                            "check reads only its patient ids and image digests).")


def define_cv_flags(values: flags.FlagValues = flags.FLAGS):
  """The trainer's flags (each fold trains with them) and the cross-validation's own."""
  define_train_flags(values)
  fields.define(CrossValidation, values)


def cv_from_flags(values: flags.FlagValues = flags.FLAGS) -> CrossValidation:
  train = train_from_flags(values)
  require_positive(values, "folds")
  check(values.folds >= 3, f"--folds must be at least 3 (one fold scored, one validating, the rest "
        f"training), got {values.folds}")
  return fields.read(CrossValidation, values, train=train)


CV_FLAGS = flag_names(define_cv_flags)
