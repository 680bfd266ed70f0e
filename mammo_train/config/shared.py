"""What every command's flags share: the choices, the flags several commands take, the protocol.

Flags that several commands take with one meaning (dataset, data_dir, runtime,
the evaluation protocol) are declared here, once each, so their names, types
and help are the same everywhere; the helpers below check a value once for
every command that takes it. A flag is declared on its config field
(`fields.flag`); a command's config module lists its own.
"""
import dataclasses
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.errors import ConfigError, check  # pylint: disable=unused-import
from mammo_train.inputs import data

MODELS = ("cnn", "resnet50", "vgg16", "inceptionv3")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
RUNTIMES = ("auto", "keras", "onnxruntime", "openvino", "openvino_bf16")  # mammo_train.inference.runtimes
THRESHOLD_RULES = ("recall", "youden")
BASELINES = ("majority", "prior_random", "pixel_logistic", "age_logistic", "metadata_logistic")
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")


def dataset_flag(default: str):
  """--dataset (the trainer, evaluate, baselines), its default the command's."""
  return fields.flag(default, "Prepared TFDS dataset, optionally with a config: "
                     "cmmd, mias, mias/density, cbis_ddsm, rsna_screening, manifest, synthetic, synthetic/tiny.")


def data_dir_flag():
  return fields.flag(None, "TFDS data dir holding the prepared dataset (default: TFDS's own).")


def runtime_flag(what: str):
  """--runtime (the trainer's feature cache and predict): who runs a model's forward pass."""
  return fields.flag("auto", f"Who runs {what}: auto = for a float32 model the fastest installed "
                     "float32 one (openvino, then onnxruntime, then keras); for a mixed_bfloat16 model "
                     "openvino_bf16 where the CPU has bfloat16 instructions, else keras; keras on a GPU. "
                     "openvino_bf16: OpenVINO computing in bfloat16, about 2x openvino; for a float32 model "
                     "only when asked for. The model is converted once and checked against Keras on a few "
                     "images before use.", enum=RUNTIMES)


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How predictions are turned into decisions and scored (one protocol for models and baselines).

  Its seed is a flag each command declares with its own help (`fields.nested`), since what else it
  seeds differs: the trainer's also seeds the weights, baselines' the SGD."""
  threshold_rule: str = fields.flag("recall", "How the operating threshold is chosen on the validation "
                                    "split: the highest reaching --target_recall, or Youden's J.",
                                    enum=THRESHOLD_RULES)
  target_recall: float = fields.flag(0.95, "Malignant recall the threshold must reach (rule 'recall').")
  n_bootstrap: int = fields.flag(1000, "Patient-level bootstrap resamples of every interval.")
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


def check_protocol(values: flags.FlagValues):
  check(0 < values.target_recall <= 1, f"--target_recall must be in (0, 1], got {values.target_recall}")
  require_positive(values, "n_bootstrap")


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
