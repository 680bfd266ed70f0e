"""`python -m mammo_train.compare`'s flags and the `Compare` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config.shared import check, flag_names, require_positive


def define_compare_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("workdir", None, "Folder for report.md, compare.json and the overlaid ROC curves.", **define)
  flags.DEFINE_integer("n_bootstrap", 1000, "Paired patient-bootstrap resamples of every interval.", **define)
  flags.DEFINE_integer("seed", 0, "Bootstrap seed.", **define)


@dataclasses.dataclass(frozen=True)
class Compare:
  workdir: str
  folders: tuple
  n_bootstrap: int
  seed: int


def compare_from_flags(values: flags.FlagValues, paths) -> Compare:
  check(values.workdir, "--workdir is required: the folder the comparison is written to")
  check(len(paths) >= 2, "give two or more training runs, evaluation folders or cv folders after the flags")
  for path in paths:
    check(os.path.isdir(path), f"{path}: no such folder")
  require_positive(values, "n_bootstrap")
  return Compare(workdir=values.workdir, folders=tuple(paths), n_bootstrap=values.n_bootstrap, seed=values.seed)


COMPARE_FLAGS = flag_names(define_compare_flags)
