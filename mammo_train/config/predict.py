"""`python -m mammo_train.predict`'s flags and the `Predict` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config import fields
from mammo_train.config.fields import flag
from mammo_train.config.shared import check, flag_names, model_file, require_positive, runtime_flag


@dataclasses.dataclass(frozen=True, kw_only=True)
class Predict:
  run: str = flag(None, "A training run's workdir: its run.json, eval/operating_point.json (the "
                  "validation-chosen thresholds) and eval/calibration.json are used.")
  model: str | None = flag(None, "The model to score with (default: the run's best.keras).")
  out: str = flag(None, "Folder for predictions.csv, predictions.json (and inputs/ with --save_inputs).")
  paths: tuple  # the files, folders and globs after the flags
  manifest: str | None = flag(None, "CSV with columns path, patient_id, laterality (and optionally view) "
                              "placing non-DICOM files into breasts.")
  save_inputs: bool = flag(False, "Also write the stored-size image the model saw for each input, as "
                           "OUT/inputs/<file name>.png, to check the crop.")
  batch_size: int = flag(16, "Images per model call.")
  allow_non_mammogram: bool = flag(False, "Score DICOMs that no rule of mammo_tfds.sources admits as "
                                   "mammograms (Modality, SOP class, body part, view code + laterality): only "
                                   "for files known to be mammograms with wrong tags.")
  explain: bool = flag(False, "Also write where the model looked, per scored input: OUT/explain/<file "
                       "name>.npy, the Grad-CAM heatmap of the malignant score mapped onto the source image's "
                       "pixels (float32, in [0, 1]), and .png, the source image as the reader windows it with "
                       "the heatmap over it.")
  runtime: str = runtime_flag("the model stage (--explain's heatmaps always use Keras)")
  allow_view_modifiers: bool = flag(False, "Score stereotactic and specimen images too (refused by default: a "
                                    "screening model was not evaluated on them); other view modifiers are "
                                    "always scored and named in the view_modifiers column.")


def define_predict_flags(values: flags.FlagValues = flags.FLAGS):
  fields.define(Predict, values)


def predict_from_flags(values: flags.FlagValues, paths) -> Predict:
  check(values.run, "--run is required: the workdir of the training run whose model predicts")
  check(os.path.isdir(values.run), f"--run={values.run}: no such folder")
  check(values.out, "--out is required: the folder predictions are written to")
  check(paths, "no files given: pass DICOM / PGM / PNG / JPEG / TIFF files, folders or globs after the flags")
  if values.model:
    model_file("model", values.model)
  check(values.manifest is None or os.path.isfile(values.manifest), f"--manifest={values.manifest}: no such file")
  require_positive(values, "batch_size")
  return fields.read(Predict, values, paths=tuple(paths))


PREDICT_FLAGS = flag_names(define_predict_flags)
