"""Evaluates a trained model on a split of any prepared dataset, and writes its report
(`python -m mammo_train.evaluate`, and the trainer at the end of a run).

The operating threshold is chosen on the dataset's validation split and
applied unchanged to the scored split, whose labels never influence it. When
the scored split is 'all' (a dataset the model was not trained on, whose
validation split is part of what is scored), the threshold is the one the
model's own training run chose: the operating_point.json next to the model
file (or one folder below it); if there is none, 0.5, and the report says so.

A missing or unreadable model, or one that does not fit the dataset (its
classes, a one-channel square input), raises config.ConfigError naming it.
"""
import os
import pathlib

import numpy as np
from absl import logging

from mammo_train import config, run_folder
from mammo_train.evaluation import (assessment, baselines, calibration, checklist, explain, report, saliency_pictures,
                                    scored, subgroups)
from mammo_train.inputs import data
from mammo_train.models import classifiers

SALIENCY_GRID = "saliency_grid.png"
GRID_PER_ROW = 6  # cases per row of the saliency grid
# How each dataset's lesion boxes are obtained (`explain.lesion_boxes`), for the report.
LOCATIONS = {"lesion_box": "where the synthetic generator drew the lesion (its lesion_box feature)",
             "findings": "squares around the dataset's findings (centre and radius) of the image's own class"}



def predict(model, builder, split, image_size: int, batch_size: int) -> assessment.Predictions:
  """The model's scores on `split`, with the labels and ids in the same order."""
  metadata = data.split_metadata(builder, split)
  images = data.eval_batches(builder, split, image_size, batch_size).map(lambda image, label: image)
  outputs = np.asarray(model.predict(images, verbose=0), dtype=float)
  if len(outputs) != len(metadata["label"]):
    raise ValueError(f"{len(outputs)} predictions for {len(metadata['label'])} examples of {split}")
  scores = classifiers.p_malignant(outputs) if data.num_classes(builder) == 2 else outputs
  return assessment.Predictions(metadata["label"], scores, metadata["patient_id"], metadata["laterality"])


def _chooses_threshold(builder, split, threshold, partition: data.Partition) -> bool:
  """Whether the threshold is chosen here, on the validation split, rather than given or stored."""
  return threshold is None and split != "all" and data.has_split(builder, partition.validation)


def _operating_point(model_path, builder, split, threshold, rule, target_recall, validation,
                     partition: data.Partition) -> assessment.OperatingPoint | None:
  if _chooses_threshold(builder, split, threshold, partition):
    return assessment.choose_operating_point(
        validation, f"{builder.info.full_name} {partition.validation}", rule, target_recall)
  if isinstance(threshold, (int, float)):
    return assessment.OperatingPoint({"image": float(threshold), "breast": float(threshold)},
                                     "given on the command line")
  stored = threshold or run_folder.stored_operating_point(model_path)
  return assessment.OperatingPoint.load(stored) if stored else None


def evaluate_model(model, builder, split, workdir, image_size: int | None, batch_size: int,
                   protocol: config.Protocol = config.Protocol(), *, tb_logdir=None, baselines_dir=None,
                   threshold=None, partition: data.Partition = data.Partition()) -> dict:
  """Scores `model` on `split`, compares it with the baselines, writes the report into workdir.

  The report covers every declared subgroup of the dataset (`subgroups`); where
  the dataset declares possible shortcuts, the metadata-only baseline on them
  is fitted here (on the training split, threshold on validation) and the
  model is compared with it overall and inside each stratum. A binary model
with a known Grad-CAM layer also gets a grid of heatmaps and, where the
dataset records lesion locations, the pointing game (`_saliency`).

  Args:
    model: a Keras model taking uint8 images, or the path of a saved one.
    builder: the prepared dataset (`data.load_builder`).
    split: 'test', 'validation', 'train' or 'all' (cross-dataset).
    workdir: where metrics.json, the PNGs (with saliency_grid.png for a model
      with a known Grad-CAM layer), report.md and (when the threshold
      was chosen here) operating_point.json are written; calibration.json too
      when the calibration maps were fitted here, on the validation split (for
      'all', the maps beside the operating point used are applied instead).
    image_size, batch_size: the model's input side (None: read from the model); prediction batch size.
    protocol: how the validation split picks the threshold, and the patient-level bootstrap.
    tb_logdir: also log the plots to TensorBoard there.
    baselines_dir: a `mammo_train.baselines` workdir: its saved baselines of
      this dataset and split are compared with the model too (majority and
      prior_random always are).
    threshold: a float, or an operating_point.json, to use instead of choosing one.
    partition: the data that trained the model (the baselines are fitted on it) and that chose its
      threshold and calibration (a cross-validation fold's parts; default the train and validation
      splits). `split` may be a `data.Selection` too.

  Returns:
    The metrics dict as written to metrics.json (undefined values are None).
  """
  model_path = None
  if isinstance(model, (str, os.PathLike)):
    model_path = str(model)
    model = classifiers.load(model_path, data.num_classes(builder), flag="model")
  image_size = image_size or model.input_shape[1]
  class_names = builder.info.features["label"].names
  binary = len(class_names) == 2
  declaration = subgroups.declared(builder)
  # Validation predictions: where the threshold (unless given) and the calibration maps are fitted.
  fits_here = binary and split != "all" and data.has_split(builder, partition.validation)
  validation = predict(model, builder, partition.validation, image_size, batch_size) if fits_here else None
  operating = None
  if binary:
    operating = _operating_point(model_path, builder, split, threshold, protocol.threshold_rule,
                                 protocol.target_recall, validation, partition)
  target = predict(model, builder, split, image_size, batch_size)
  tables = {"train": data.split_metadata(builder, partition.train, declaration.columns),
            "target": data.split_metadata(builder, split, declaration.columns)}
  if data.has_split(builder, partition.validation):
    tables["validation"] = data.split_metadata(builder, partition.validation, declaration.columns)
  if not np.array_equal(tables["target"]["patient_id"], target.patient_id):
    raise ValueError(f"the metadata of {builder.info.full_name} {split} is not in the order of its predictions")
  target.features = {key: value for key, value in tables["target"].items() if key not in ("label", "patient_id")}
  shares = baselines.class_shares(tables["train"]["label"], len(class_names))
  metadata = {"label": target.labels, "patient_id": target.patient_id, "laterality": target.laterality}
  compared = {name: (make(shares, metadata), None, baselines.DESCRIPTIONS[name])
              for name, make in (("majority", baselines.majority), ("prior_random", baselines.prior_random))}
  if declaration.shortcuts:
    compared[assessment.METADATA_BASELINE] = baselines.metadata_baseline(
        tables, target, declaration, protocol.threshold_rule, protocol.target_recall)
  if baselines_dir:
    compared.update(baselines.load(baselines_dir, builder.info.full_name, split))
  result, curves = assessment.assess(target, class_names, operating, baselines=compared,
                                     n_bootstrap=protocol.n_bootstrap, seed=protocol.seed, declaration=declaration)
  maps, how = _calibration_maps(validation, model_path, threshold, builder, partition)
  if maps:
    result["calibration"] = calibration.judge_levels(assessment.levels(target, 2), maps, how,
                                                     protocol.n_bootstrap, protocol.seed)
  pictures = {}
  if binary and model.name in explain.CAM_LAYERS:
    saliency, pictures = _saliency(model, builder, split, image_size, batch_size, target,
                                   result["threshold"]["values"]["image"], protocol)
    result.update(saliency)
  result = {"dataset": assessment.dataset_entry(builder, str(split), target, class_names),
            "model": model_path or model.name, **result}
  report.write(result, curves, workdir, tb_logdir, pictures=pictures)
  checklist.record(builder, report.plain(result), workdir, model_path, assessment.levels(target, 2) if binary
                   else None, protocol.n_bootstrap, protocol.seed)
  scored.write_predictions(workdir, builder, split, target, class_names)
  if operating is not None and _chooses_threshold(builder, split, threshold, partition):
    operating.save(workdir)
  if maps and validation is not None:
    calibration.save(maps, workdir)
  logging.info("evaluation of %s on %s %s written to %s", result["model"], builder.info.full_name, split, workdir)
  return report.plain(result)


def _saliency(model, builder, split, image_size: int, batch_size: int, target: assessment.Predictions,
              threshold: float, protocol: config.Protocol) -> tuple:
  """({"saliency", "localisation"}, {grid file: PNG}): one batched Grad-CAM pass over the scored split.

  The grid shows the most confident cases of each class, decided right and
  wrong, at the image threshold. Where the dataset records lesion locations,
  each heatmap is mapped to source pixels and scored against its boxes on
  the way (`explain.explain_split`), so no split-sized array is held;
  "localisation" is then the pointing game and heatmap mass inside, per
  class, with patient-bootstrap intervals.
  """
  located = [key for key in explain.LOCATION_FEATURES if key in builder.info.features]
  rows = saliency_pictures.grid_cases(target.labels, target.scores, threshold, GRID_PER_ROW)
  keep = np.concatenate(rows).astype(int)
  examples = data.eval_examples(builder, split, image_size, ["patient_id", "label", "crop_box", "flipped", *located])
  passed = explain.explain_split(model, _in_order(examples, target.patient_id, builder, split), batch_size, keep)
  if len(passed.measures) != len(target.labels):
    raise ValueError(f"{len(passed.measures)} heatmaps for {len(target.labels)} examples of "
                     f"{builder.info.full_name} {split}")
  cases = [passed.cases[i] for i in keep]  # (input, heatmap, boxes in the input frame)
  grid = saliency_pictures.grid_png(np.array([case[0] for case in cases]), np.array([case[1] for case in cases]),
                          target.labels[keep], target.scores[keep], threshold, per_row=GRID_PER_ROW,
                          boxes=[case[2] for case in cases] if located else None)
  entries = {"saliency": {"method": "grad_cam", "target": "the malignant score's logit",
                          "layer": explain.cam_layer(model), "images": len(target.labels), "threshold": threshold,
                          "grid": SALIENCY_GRID}}
  if located:
    entries["localisation"] = {
        "boxes": LOCATIONS[located[0]], "frame": "source pixels",
        **explain.localisation_by_class(passed.measures, target.labels, target.patient_id, protocol.n_bootstrap,
                                        protocol.seed)}
  return entries, {SALIENCY_GRID: grid}


def _in_order(examples, patient_ids, builder, split):
  """`examples`, checked to come in the order of the predictions (their patients), as they pass."""
  for index, example in enumerate(examples):
    if index >= len(patient_ids) or example["patient_id"].decode("utf-8") != patient_ids[index]:
      raise ValueError(f"the examples of {builder.info.full_name} {split} are not in the order of its predictions")
    yield example


def _calibration_maps(validation, model_path, threshold, builder, partition: data.Partition) -> tuple:
  """(level -> calibration map, how it was obtained), or (None, None).

  Fitted on the validation predictions when there are some; otherwise the
  calibration.json beside the operating point the threshold came from (the
  model's training run), as for the threshold.
  """
  if validation is not None:
    validation_levels = assessment.levels(validation, 2)
    fitted_on = f"the {builder.info.full_name} {partition.validation} split"
    return ({name: calibration.fit(validation_levels[name].labels, validation_levels[name].scores, fitted_on)
             for name in assessment.THRESHOLD_LEVELS}, f"fitted on {fitted_on}, rule: {calibration.RULE}")
  if isinstance(threshold, (int, float)):
    return None, None
  source = pathlib.Path(threshold) if threshold else run_folder.stored_operating_point(model_path)
  stored = source.parent / calibration.CALIBRATION if source else None
  if stored is None or not stored.exists():
    return None, None
  return calibration.load(stored), f"taken from {stored}"
