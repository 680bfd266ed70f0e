"""What every command's flags share: the choices, the shared flags (defined once each), the protocol.

Flags that several commands share (dataset, data_dir, batch size, seed,
threshold rule, target recall, bootstrap resamples) are defined here, in one
helper each, so their names, defaults and help are the same everywhere; the
helpers below check a value once for every command that takes it.
"""
import dataclasses
import os

from absl import flags

from mammo_train.errors import ConfigError, check  # pylint: disable=unused-import
from mammo_train.inputs import data

MODELS = ("cnn", "resnet50", "vgg16", "inceptionv3")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
RUNTIMES = ("auto", "keras", "onnxruntime", "openvino")  # mammo_train.inference.runtimes
THRESHOLD_RULES = ("recall", "youden")
BASELINES = ("majority", "prior_random", "pixel_logistic", "age_logistic", "metadata_logistic")
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")




def define_shared(values: flags.FlagValues, *, dataset: str, batch_size: int, batch_help: str, seed_help: str):
  """The flags every command has: dataset, data dir, batch size, seed and the evaluation protocol."""
  flags.DEFINE_string("dataset", dataset, "Prepared TFDS dataset, optionally with a config: "
                      "cmmd, mias, mias/density, cbis_ddsm, rsna_screening, manifest, synthetic, synthetic/tiny.",
                      flag_values=values)
  flags.DEFINE_string("data_dir", None, "TFDS data dir holding the prepared dataset (default: TFDS's own).",
                      flag_values=values)
  flags.DEFINE_integer("batch_size", batch_size, batch_help, flag_values=values)
  flags.DEFINE_integer("seed", 0, seed_help, flag_values=values)
  define_protocol(values)


def define_runtime(values: flags.FlagValues, what: str):
  """--runtime (the trainer's feature cache and predict): who runs a model's forward pass."""
  flags.DEFINE_enum("runtime", "auto", RUNTIMES, f"Who runs {what}: auto = the fastest installed (openvino, "
                    "then onnxruntime, then keras; keras on a GPU or under mixed precision). The model is "
                    "converted once and checked against Keras on a few images before use.", flag_values=values)


def define_protocol(values: flags.FlagValues):
  flags.DEFINE_enum("threshold_rule", "recall", THRESHOLD_RULES, "How the operating threshold is chosen on "
                    "the validation split: the highest reaching --target_recall, or Youden's J.",
                    flag_values=values)
  flags.DEFINE_float("target_recall", 0.95, "Malignant recall the threshold must reach (rule 'recall').",
                     flag_values=values)
  flags.DEFINE_integer("n_bootstrap", 1000, "Patient-level bootstrap resamples of every interval.",
                       flag_values=values)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How predictions are turned into decisions and scored (one protocol for models and baselines)."""
  threshold_rule: str = "recall"
  target_recall: float = 0.95
  n_bootstrap: int = 1000
  seed: int = 0


def dataset_of(values: flags.FlagValues) -> str:
  try:
    data.qualified_name(values.dataset)
  except ValueError as error:
    raise ConfigError(f"--dataset: {error}") from None
  return values.dataset


def require_positive(values: flags.FlagValues, *names: str):
  for name in names:
    check(values[name].value >= 1, f"--{name} must be at least 1, got {values[name].value}")


def protocol_of(values: flags.FlagValues) -> Protocol:
  check(0 < values.target_recall <= 1, f"--target_recall must be in (0, 1], got {values.target_recall}")
  require_positive(values, "n_bootstrap")
  return Protocol(values.threshold_rule, values.target_recall, values.n_bootstrap, values.seed)


def model_file(flag: str, path: str | None) -> str:
  check(path, f"--{flag} is required: a saved .keras model, e.g. runs/r50/best.keras")
  check(os.path.isfile(path), f"--{flag}={path}: no such file")
  check(path.endswith(".keras"), f"--{flag}={path}: expected a .keras model file")
  return path


def flag_names(define) -> set:
  scratch = flags.FlagValues()
  define(scratch)
  return set(scratch)


def flagfile(values: flags.FlagValues, names) -> str:
  """The named flags as set for a run, one per line: reusable with --flagfile."""
  lines = [values[name].serialize() for name in sorted(names) if values[name].value is not None]
  return "\n".join(lines) + "\n"


def split_of(values: flags.FlagValues) -> str:
  check(values.split in data.SPLITS + ("all",),
        f"--split={values.split}: expected one of {', '.join(data.SPLITS + ('all',))}")
  return values.split
