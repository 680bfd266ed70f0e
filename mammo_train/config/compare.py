"""`python -m mammo_train.compare`'s flags and the `Compare` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import check, flag_names, require_positive


@dataclasses.dataclass(frozen=True, kw_only=True)
class Compare:
  workdir: str = flag(None, "Folder for report.md, compare.json and the overlaid ROC curves.")
  folders: tuple  # the runs, evaluation, cv or baseline folders after the flags
  n_bootstrap: int = flag(1000, "Paired patient-bootstrap resamples of every interval.")
  seed: int = flag(0, "Bootstrap seed.")


def define_compare_flags(values: flags.FlagValues = flags.FLAGS):
  fields.define(Compare, values)


def compare_from_flags(values: flags.FlagValues, paths) -> Compare:
  check(values.workdir, "--workdir is required: the folder the comparison is written to")
  check(len(paths) >= 2, "give two or more training runs, evaluation, cv or baseline folders after the flags")
  for path in paths:
    check(os.path.isdir(path), f"{path}: no such folder")
  require_positive(values, "n_bootstrap")
  return fields.read(Compare, values, folders=tuple(paths))


COMPARE_FLAGS = flag_names(define_compare_flags)
