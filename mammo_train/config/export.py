"""`python -m mammo_train.export`'s flags and the `Export` config."""
import dataclasses

from absl import flags

from mammo_train.config.shared import EXPORT_FORMATS, check, flag_names, model_file


def define_export_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("model", None, "A training run's .keras model, e.g. RUN_DIR/best.keras; the run folder "
                      "beside it gives the dataset, test metrics, threshold and calibration for the model card.",
                      **define)
  flags.DEFINE_enum("format", "saved_model", EXPORT_FORMATS, "saved_model (TF Serving), tflite (float32 and "
                    "dynamic-range int8) or onnx.", **define)
  flags.DEFINE_string("out", None, "Export folder; formats exported into one folder share one model card.",
                      **define)
  flags.DEFINE_string("data_dir", None, "TFDS data dir of the run's dataset, if not the one run.json names "
                      "(the test split is what each export is checked on).", **define)


@dataclasses.dataclass(frozen=True)
class Export:
  model: str
  format: str
  out: str
  data_dir: str | None


def export_from_flags(values: flags.FlagValues = flags.FLAGS) -> Export:
  model = model_file("model", values.model)
  check(values.out, "--out is required: the folder the export and its model card are written to")
  return Export(model=model, format=values.format, out=values.out, data_dir=values.data_dir)


EXPORT_FLAGS = flag_names(define_export_flags)
