"""Evaluates a trained model on a split of any prepared dataset, and writes its report.

  python -m mammo_train.evaluate --model=runs/r50/best.keras --dataset=cmmd --split=test \
      --workdir=runs/r50/eval
  python -m mammo_train.evaluate --model=runs/r50/best.keras --dataset=mias --split=all

The operating threshold is chosen on the dataset's validation split and
applied unchanged to the scored split, whose labels never influence it. When
the scored split is 'all' (a dataset the model was not trained on, whose
validation split is part of what is scored), the threshold is the one the
model's own training run chose: the operating_point.json next to the model
file (or one folder below it); if there is none, 0.5, and the report says so.

The trainer calls `evaluate_model` at the end of a run; this module defines
its command-line flags only when run as a program, so importing it defines
none (the trainer has flags of the same names).
"""
import os
import pathlib

import keras
import numpy as np
from absl import app, flags, logging

from mammo_train import assessment, baselines, calibration, data, report, subgroups


def predict(model, builder, split: str, image_size: int, batch_size: int) -> assessment.Predictions:
  """The model's scores on `split`, with the labels and ids in the same order."""
  metadata = data.split_metadata(builder, split)
  images = data.eval_batches(builder, split, image_size, batch_size).map(lambda image, label: image)
  outputs = np.asarray(model.predict(images, verbose=0), dtype=float)
  if len(outputs) != len(metadata["label"]):
    raise ValueError(f"{len(outputs)} predictions for {len(metadata['label'])} examples of {split}")
  if outputs.shape[-1] == 1:
    scores = outputs[:, 0]
  elif data.num_classes(builder) == 2:
    scores = outputs[:, 1]
  else:
    scores = outputs
  return assessment.Predictions(metadata["label"], scores, metadata["patient_id"], metadata["laterality"])


def stored_operating_point(model_path) -> pathlib.Path | None:
  """The operating_point.json of the model's training run: beside the model file, or one folder down."""
  if model_path is None:
    return None
  folder = pathlib.Path(model_path).parent
  beside = folder / assessment.OPERATING_POINT
  if beside.exists():
    return beside
  below = sorted(folder.glob(f"*/{assessment.OPERATING_POINT}"))
  if len(below) > 1:
    raise ValueError(f"several operating points for {model_path}: {', '.join(map(str, below))}; "
                     "pass --threshold with the one to use")
  return below[0] if below else None


def _chooses_threshold(builder, split: str, threshold) -> bool:
  """Whether the threshold is chosen here, on the validation split, rather than given or stored."""
  return threshold is None and split != "all" and "validation" in builder.info.splits


def _operating_point(model, model_path, builder, split, image_size, batch_size, threshold, rule,
                     target_recall, validation=None) -> assessment.OperatingPoint | None:
  if _chooses_threshold(builder, split, threshold):
    if validation is None:
      validation = predict(model, builder, "validation", image_size, batch_size)
    return assessment.choose_operating_point(
        validation, f"{builder.info.full_name} validation", rule, target_recall)
  if isinstance(threshold, (int, float)):
    return assessment.OperatingPoint({"image": float(threshold), "breast": float(threshold)},
                                     "given on the command line")
  stored = threshold or stored_operating_point(model_path)
  return assessment.OperatingPoint.load(stored) if stored else None


def evaluate_model(model, builder, split, workdir, image_size, batch_size, seed=0, tb_logdir=None,
                   threshold_rule="recall", target_recall=0.95, n_bootstrap=1000, *, baselines_dir=None,
                   threshold=None) -> dict:
  """Scores `model` on `split`, compares it with the baselines, writes the report into workdir.

  Args:
    model: a Keras model taking uint8 images, or the path of a saved one.
    builder: the prepared dataset (`data.load_builder`).
    split: 'test', 'validation', 'train' or 'all' (cross-dataset).
    workdir: where metrics.json, the PNGs, report.md and (when the threshold
      was chosen here) operating_point.json are written.
    image_size, batch_size: the model's input side (None: read from the model); prediction batch size.
    seed, n_bootstrap: the patient-level bootstrap.
    tb_logdir: also log the plots to TensorBoard there.
    threshold_rule, target_recall: how the validation split picks the threshold.
    baselines_dir: a `mammo_train.baselines` workdir: its saved baselines of
      this dataset and split are compared with the model too (majority and
      prior_random always are).
    threshold: a float, or an operating_point.json, to use instead of choosing one.

  Returns:
    The metrics dict as written to metrics.json (undefined values are None).
  """
  model_path = None
  if isinstance(model, (str, os.PathLike)):
    model_path = str(model)
    model = keras.models.load_model(model_path)
  image_size = image_size or model.input_shape[1]
  class_names = builder.info.features["label"].names
  binary = len(class_names) == 2
  declaration = subgroups.declared(builder)
  # Validation predictions: where the threshold (unless given) and the calibration maps are fitted.
  fits_here = binary and split != "all" and "validation" in builder.info.splits
  validation = predict(model, builder, "validation", image_size, batch_size) if fits_here else None
  operating = None
  if binary:
    operating = _operating_point(model, model_path, builder, split, image_size, batch_size, threshold,
                                 threshold_rule, target_recall, validation)
  target = predict(model, builder, split, image_size, batch_size)
  tables = {"train": data.split_metadata(builder, "train", declaration.columns),
            "target": data.split_metadata(builder, split, declaration.columns)}
  if "validation" in builder.info.splits:
    tables["validation"] = data.split_metadata(builder, "validation", declaration.columns)
  if not np.array_equal(tables["target"]["patient_id"], target.patient_id):
    raise ValueError(f"the metadata of {builder.info.full_name} {split} is not in the order of its predictions")
  target.features = {key: value for key, value in tables["target"].items() if key not in ("label", "patient_id")}
  shares = baselines.class_shares(tables["train"]["label"], len(class_names))
  metadata = {"label": target.labels, "patient_id": target.patient_id, "laterality": target.laterality}
  compared = {name: (make(shares, metadata), None, baselines.DESCRIPTIONS[name])
              for name, make in (("majority", baselines.majority), ("prior_random", baselines.prior_random))}
  if declaration.shortcuts:
    compared[assessment.METADATA_BASELINE] = baselines.metadata_baseline(tables, target, declaration,
                                                                          threshold_rule, target_recall)
  if baselines_dir:
    compared.update(baselines.load(baselines_dir, builder.info.full_name, split))
  result, curves = assessment.assess(target, class_names, operating, baselines=compared,
                                     n_bootstrap=n_bootstrap, seed=seed, declaration=declaration)
  maps, how = _calibration_maps(validation, model_path, threshold, builder)
  if maps:
    result["calibration"] = calibration.judge_levels(assessment.levels(target, 2), maps, how, n_bootstrap, seed)
  result = {"dataset": assessment.dataset_entry(builder, split, target, class_names),
            "model": model_path or model.name, **result}
  report.write(result, curves, workdir, tb_logdir)
  if operating is not None and _chooses_threshold(builder, split, threshold):
    operating.save(workdir)
  if maps and validation is not None:
    calibration.save(maps, workdir)
  logging.info("evaluation of %s on %s %s written to %s", result["model"], builder.info.full_name, split, workdir)
  return report.plain(result)


def _calibration_maps(validation, model_path, threshold, builder) -> tuple:
  """(level -> calibration map, how it was obtained), or (None, None).

  Fitted on the validation predictions when there are some; otherwise the
  calibration.json beside the operating point the threshold came from (the
  model's training run), as for the threshold.
  """
  if validation is not None:
    validation_levels = assessment.levels(validation, 2)
    fitted_on = f"the {builder.info.full_name} validation split"
    return ({name: calibration.fit(validation_levels[name].labels, validation_levels[name].scores, fitted_on)
             for name in assessment.THRESHOLD_LEVELS}, f"fitted on {fitted_on}, rule: {calibration.RULE}")
  if isinstance(threshold, (int, float)):
    return None, None
  source = pathlib.Path(threshold) if threshold else stored_operating_point(model_path)
  stored = source.parent / calibration.CALIBRATION if source else None
  if stored is None or not stored.exists():
    return None, None
  return calibration.load(stored), f"taken from {stored}"


def _define_flags():
  flags.DEFINE_string("model", None, "Saved Keras model (.keras) to evaluate.", required=True)
  flags.DEFINE_string("dataset", "cmmd", "Prepared dataset: cmmd, mias, mias/density, synthetic, synthetic/tiny.")
  flags.DEFINE_string("data_dir", None, "TFDS data dir holding the prepared dataset.")
  flags.DEFINE_string("split", "test", "Split to score: test, validation, train, or all (cross-dataset).")
  flags.DEFINE_string("workdir", None, "Report folder (default: eval-<dataset>-<split> beside the model).")
  flags.DEFINE_string("tb_logdir", None, "Also log the plots to TensorBoard here.")
  flags.DEFINE_integer("batch_size", 16, "Prediction batch size.")
  flags.DEFINE_enum("threshold_rule", "recall", ["recall", "youden"], "How the threshold is chosen on validation.")
  flags.DEFINE_float("target_recall", 0.95, "Malignant recall the threshold must reach (rule 'recall').")
  flags.DEFINE_string("threshold", None, "A fixed threshold, or an operating_point.json, instead of choosing one.")
  flags.DEFINE_string("baselines_dir", None, "A `mammo_train.baselines` workdir to compare with too.")
  flags.DEFINE_integer("n_bootstrap", 1000, "Patient-level bootstrap resamples.")
  flags.DEFINE_integer("seed", 0, "Bootstrap seed.")


def _threshold_flag(value: str | None):
  if value is None:
    return None
  try:
    return float(value)
  except ValueError:
    return value


def main(argv):
  del argv
  config = flags.FLAGS
  builder = data.load_builder(config.dataset, config.data_dir)
  workdir = config.workdir or (pathlib.Path(config.model).parent
                               / f"eval-{config.dataset.replace('/', '-')}-{config.split}")
  result = evaluate_model(config.model, builder, config.split, workdir, None, config.batch_size,
                          config.seed, config.tb_logdir, config.threshold_rule, config.target_recall,
                          config.n_bootstrap, baselines_dir=config.baselines_dir,
                          threshold=_threshold_flag(config.threshold))
  print(f"report: {pathlib.Path(workdir) / 'report.md'}")
  for level_name, level in result["levels"].items():
    print(f"{level_name} level: " + ", ".join(f"{name} {report.interval_text(level, name)}"
                                              for name in report.HEADLINE if name in level))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
