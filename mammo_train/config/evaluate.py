"""`python -m mammo_train.evaluate`'s flags and the `Evaluate` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import Protocol, check, check_protocol, data_dir_flag, dataset_flag, dataset_of, \
    flag_names, model_file, require_positive, split_of


@dataclasses.dataclass(frozen=True, kw_only=True)
class Evaluate:
  model: str = flag(None, "Saved Keras model (.keras) to evaluate.")
  dataset: str = dataset_flag("cmmd")
  data_dir: str | None = data_dir_flag()
  split: str = flag("test", "Split to score: test, validation, train, or all (cross-dataset).")
  workdir: str = flag(None, "Report folder (default: eval-<dataset>-<split> beside the model).")
  tb_logdir: str | None = flag(None, "Also log the plots to TensorBoard here.")
  batch_size: int = flag(16, "Prediction batch size.")
  # A fixed value, an operating_point.json, or None: choose on validation.
  threshold: float | str | None = flag(None, "A fixed threshold, or an operating_point.json, instead of "
                                       "choosing one.", kind=str)
  baselines_dir: str | None = flag(None, "A `mammo_train.baselines` workdir to compare with too.")
  protocol: Protocol = fields.nested(Protocol, seed="Bootstrap seed.")


def define_evaluate_flags(values: flags.FlagValues = flags.FLAGS):
  fields.define(Evaluate, values)


def _threshold(value: str | None):
  if value is None:
    return None
  try:
    threshold = float(value)
  except ValueError:
    check(os.path.isfile(value), f"--threshold={value}: neither a number nor an existing operating_point.json")
    return value
  check(0 <= threshold <= 1, f"--threshold={value}: a threshold on P(malignant) must be in [0, 1]")
  return threshold


def evaluate_from_flags(values: flags.FlagValues = flags.FLAGS) -> Evaluate:
  model = model_file("model", values.model)
  dataset, split = dataset_of(values), split_of(values)
  require_positive(values, "batch_size")
  check(values.baselines_dir is None or os.path.isdir(values.baselines_dir),
        f"--baselines_dir={values.baselines_dir}: no such folder")
  workdir = values.workdir or os.path.join(os.path.dirname(model),
                                           f"eval-{dataset.replace('/', '-')}-{split}")
  threshold = _threshold(values.threshold)
  check_protocol(values)
  return fields.read(Evaluate, values, workdir=workdir, threshold=threshold)


EVALUATE_FLAGS = flag_names(define_evaluate_flags)
