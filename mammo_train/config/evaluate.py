"""`python -m mammo_train.evaluate`'s flags and the `Evaluate` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config.shared import Protocol, check, dataset_of, define_shared, flag_names, model_file, \
    protocol_of, require_positive, split_of


def define_evaluate_flags(values: flags.FlagValues = flags.FLAGS):
  define_shared(values, dataset="cmmd", batch_size=16, batch_help="Prediction batch size.",
                 seed_help="Bootstrap seed.")
  define = dict(flag_values=values)
  flags.DEFINE_string("model", None, "Saved Keras model (.keras) to evaluate.", **define)
  flags.DEFINE_string("split", "test", "Split to score: test, validation, train, or all (cross-dataset).",
                      **define)
  flags.DEFINE_string("workdir", None, "Report folder (default: eval-<dataset>-<split> beside the model).",
                      **define)
  flags.DEFINE_string("tb_logdir", None, "Also log the plots to TensorBoard here.", **define)
  flags.DEFINE_string("threshold", None, "A fixed threshold, or an operating_point.json, instead of "
                      "choosing one.", **define)
  flags.DEFINE_string("baselines_dir", None, "A `mammo_train.baselines` workdir to compare with too.",
                      **define)


@dataclasses.dataclass(frozen=True)
class Evaluate:
  model: str
  dataset: str
  data_dir: str | None
  split: str
  workdir: str
  tb_logdir: str | None
  batch_size: int
  threshold: float | str | None  # a fixed value, an operating_point.json, or None: choose on validation
  baselines_dir: str | None
  protocol: Protocol


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
  return Evaluate(model=model, dataset=dataset, data_dir=values.data_dir, split=split, workdir=workdir,
                  tb_logdir=values.tb_logdir, batch_size=values.batch_size,
                  threshold=_threshold(values.threshold), baselines_dir=values.baselines_dir,
                  protocol=protocol_of(values))


EVALUATE_FLAGS = flag_names(define_evaluate_flags)
