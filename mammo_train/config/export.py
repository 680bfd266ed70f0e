"""`python -m mammo_train.export`'s flags and the `Export` config."""
import dataclasses

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import EXPORT_FORMATS, check, flag_names, model_file


@dataclasses.dataclass(frozen=True, kw_only=True)
class Export:
  model: str = flag(None, "A training run's .keras model, e.g. RUN_DIR/best.keras; the run folder beside it "
                    "gives the dataset, test metrics, threshold and calibration for the model card.")
  format: str = flag("saved_model", "saved_model (TF Serving), tflite (float32 and dynamic-range int8) or onnx.",
                     enum=EXPORT_FORMATS)
  out: str = flag(None, "Export folder; formats exported into one folder share one model card.")
  data_dir: str | None = flag(None, "TFDS data dir of the run's dataset, if not the one run.json names (the "
                              "test split is what each export is checked on).")


def define_export_flags(values: flags.FlagValues = flags.FLAGS):
  fields.define(Export, values)


def export_from_flags(values: flags.FlagValues = flags.FLAGS) -> Export:
  model_file("model", values.model)
  check(values.out, "--out is required: the folder the export and its model card are written to")
  return fields.read(Export, values)


EXPORT_FLAGS = flag_names(define_export_flags)
