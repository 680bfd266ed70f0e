"""`python -m mammo_train.predict`'s flags and the `Predict` config."""
import dataclasses
import os

from absl import flags

from mammo_train.config.shared import check, define_runtime, flag_names, model_file, require_positive


def define_predict_flags(values: flags.FlagValues = flags.FLAGS):
  define = dict(flag_values=values)
  flags.DEFINE_string("run", None, "A training run's workdir: its run.json, eval/operating_point.json (the "
                      "validation-chosen thresholds) and eval/calibration.json are used.", **define)
  flags.DEFINE_string("model", None, "The model to score with (default: the run's best.keras).", **define)
  flags.DEFINE_string("out", None, "Folder for predictions.csv, predictions.json (and inputs/ with "
                      "--save_inputs).", **define)
  flags.DEFINE_string("manifest", None, "CSV with columns path, patient_id, laterality (and optionally view) "
                      "placing non-DICOM files into breasts.", **define)
  flags.DEFINE_boolean("save_inputs", False, "Also write the stored-size image the model saw for each input, "
                       "as OUT/inputs/<file name>.png, to check the crop.", **define)
  flags.DEFINE_boolean("explain", False, "Also write where the model looked, per scored input: OUT/explain/"
                       "<file name>.npy, the Grad-CAM heatmap of the malignant score mapped onto the source "
                       "image's pixels (float32, in [0, 1]), and .png, the source image as the reader windows it "
                       "with the heatmap over it.", **define)
  flags.DEFINE_integer("batch_size", 16, "Images per model call.", **define)
  define_runtime(values, "the model stage (--explain's heatmaps always use Keras)")
  flags.DEFINE_boolean("allow_non_mammogram", False, "Score DICOMs that no rule of mammo_tfds.sources admits "
                       "as mammograms (Modality, SOP class, body part, view code + laterality): only for files "
                       "known to be mammograms with wrong tags.", **define)
  flags.DEFINE_boolean("allow_view_modifiers", False, "Score stereotactic and specimen images too (refused by "
                       "default: a screening model was not evaluated on them); other view modifiers are always "
                       "scored and named in the view_modifiers column.", **define)


@dataclasses.dataclass(frozen=True)
class Predict:
  run: str
  model: str | None
  out: str
  paths: tuple
  manifest: str | None
  save_inputs: bool
  batch_size: int
  allow_non_mammogram: bool
  explain: bool
  runtime: str
  allow_view_modifiers: bool = False


def predict_from_flags(values: flags.FlagValues, paths) -> Predict:
  check(values.run, "--run is required: the workdir of the training run whose model predicts")
  check(os.path.isdir(values.run), f"--run={values.run}: no such folder")
  check(values.out, "--out is required: the folder predictions are written to")
  check(paths, "no files given: pass DICOM / PGM / PNG / JPEG / TIFF files, folders or globs after the flags")
  if values.model:
    model_file("model", values.model)
  check(values.manifest is None or os.path.isfile(values.manifest), f"--manifest={values.manifest}: no such file")
  require_positive(values, "batch_size")
  return Predict(run=values.run, model=values.model, out=values.out, paths=tuple(paths), manifest=values.manifest,
                 save_inputs=values.save_inputs, batch_size=values.batch_size,
                 allow_non_mammogram=values.allow_non_mammogram, explain=values.explain,
                 allow_view_modifiers=values.allow_view_modifiers, runtime=values.runtime)


PREDICT_FLAGS = flag_names(define_predict_flags)
