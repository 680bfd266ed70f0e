"""Prediction's library (`python -m mammo_train.predict`): new source files -> per-image and per-breast
scores and decisions at a run's operating point.

Files go
through `mammo_tfds.sources.read` and `mammo_tfds.imaging.preprocess` exactly
as a builder takes them, at the dataset's stored size (`reading`, in a pool of
worker processes), and then through the trainer's own `data.resize` to the
model's input size, so a model sees what it was evaluated on.

- Files: `discovery.expand_paths` takes files, folders (searched recursively) and globs.
- Breasts: `discovery.place` (DICOM tags, manifest row or NYU's file names).
  An image that cannot be placed is scored per image only, and says why.
- Scores: per image the model's P(malignant); per breast the mean of its
  views' scores (`metrics.pool_breasts`, the evaluation's rule); each level's
  decision is "malignant" when its score reaches that level's threshold.
- Bad files: one line each naming the file, its `Reason` code and the
  problem; the rest are scored. The summary line and predictions.json
  (`skipped_by_reason`) count them by code. Stereotactic and specimen images
  are refused unless `--allow_view_modifiers` (`reading`); other view
  modifiers are named in the `view_modifiers` column, beside `admitted_by`
  (the rule that made the file a mammogram) and `polarity_note`.
- The model stage runs on the chosen runtime (`runtimes.checked_forward`:
  Keras, ONNX Runtime or OpenVINO, checked against Keras before use); the
  runtime and what its scores differed from Keras's by on the check images
  (`runtime_difference`) are in every row. review.html beside predictions.csv shows
  every file's crop, input, score and decision (`review.write`).
- Where the model looked (`--explain`): per scored file, the Grad-CAM heatmap
  of its malignant score (`explain.grad_cam`, one call per scoring batch),
  mapped back through resize, pad, flip and crop onto the source pixels
  (`imaging.output_to_source`), written as OUT/explain/<file name>.npy
  (float32, the source image's shape) and .png (the source image as the
  reader windows it, heatmap over it). Only then do the workers send the
  source pixels back (at most a window and a batch of them at a time), and
  they are dropped once the pair is written.
"""
import collections
import csv
import dataclasses
import json
import os
import pathlib
import sys
from typing import Callable, Optional, Sequence

from absl import logging
import numpy as np
from PIL import Image

from mammo_tfds import imaging
from mammo_train import config, run_folder
from mammo_train.evaluation import explain, metrics, saliency_pictures
from mammo_train.inference import discovery, reading, review, runtimes
from mammo_train.inputs import data
from mammo_train.models import classifiers

LEVELS = ("image", "breast")


# ---- scoring --------------------------------------------------------------------


def _scores(model, batch: np.ndarray) -> np.ndarray:
  """P(malignant) per image of a uint8 batch at the model's input size (`classifiers.p_malignant`)."""
  predict_batch = getattr(model, "predict_on_batch", model)
  outputs = np.asarray(predict_batch(batch), dtype=float)
  if outputs.ndim != 2 or outputs.shape[0] != len(batch) or not classifiers.is_binary(outputs.shape[1]):
    raise ValueError(f"the model gave outputs of shape {outputs.shape} for {len(batch)} images: "
                     "expected [B, 1] or [B, 2] (binary task)")
  return classifiers.p_malignant(outputs)


@dataclasses.dataclass(frozen=True)
class Scored:
  """One scored image: its file and tags (images dropped), its breast, its score."""
  prepared: reading.Prepared
  placement: Optional[discovery.Placement]
  score: float
  not_placed: str  # why it has no breast, or ""
  name: str = ""  # its files' name under inputs/ and explain/ (with --save_inputs / --explain)


@dataclasses.dataclass
class Result:
  """What `predict_files` found."""
  images: list  # Scored, in file order
  failures: list  # reading.Failure


def predict_files(model, files: Sequence[str], *, stored_size: int, image_size: int, batch_size: int = 16,
                  manifest: Optional[dict] = None, workers: Optional[int] = None,
                  allow_non_mammogram: bool = False, allow_view_modifiers: bool = False,
                  save_inputs: Optional[str] = None,
                  explain_dir: Optional[str] = None, score_with: Optional[Callable] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> Result:
  """Scores every usable file; bad files become Failures, each logged as one line.

  Args:
    model: a Keras model, or any callable taking uint8 images [B, S, S, 1]
      and giving [B, 1] (or [B, 2]) probabilities.
    files: from `expand_paths`.
    stored_size: the side of the dataset's stored images (what the model was
      evaluated on); `image_size`: the model's input side.
    save_inputs: a folder to write each stored-size input as `<file name>.png`.
    explain_dir: a folder to write each file's heatmap in source pixels and
      its overlay as `<file name>.npy` / `.png` (`model` must be a Keras
      model of `mammo_train.models.classifiers`); the same name as in `save_inputs`.
    score_with: the model stage on another runtime (`runtimes.checked_forward`
      of `model`); default `model` itself.
    progress: called with (files done, files in all) after each batch.
  """
  result = Result([], [])
  batch, done = [], 0  # batch: (Prepared, output file name)
  for folder in (save_inputs, explain_dir):
    if folder:
      pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
  taken_names = set()

  def flush():
    if batch:
      inputs = np.asarray(data.resize(np.stack([p.image for p, _ in batch]), image_size))
      scores = _scores(score_with or model, inputs)
      if explain_dir:
        _write_heatmaps(explain_dir, batch, explain.grad_cam(model, inputs, batch_size=len(batch), target_class=1))
      for (prepared, name), score in zip(batch, scores):
        placement, why = discovery.place(prepared, manifest)
        if why:
          logging.warning("%s: %s: scored per image only", prepared.path, why)
        dropped = dataclasses.replace(prepared, image=np.zeros((0, 0, 1), np.uint8),
                                      source=dataclasses.replace(prepared.source, pixels=np.zeros((0, 0), np.uint8)))
        result.images.append(Scored(dropped, placement, float(score), why or "", name or ""))
      batch.clear()
    if progress:
      progress(done, len(files))

  for outcome in reading.prepared_stream(files, stored_size, workers=workers,
                                         allow_non_mammogram=allow_non_mammogram,
                                         allow_view_modifiers=allow_view_modifiers,
                                         vouched=frozenset(manifest or ()), keep_pixels=bool(explain_dir)):
    done += 1
    if isinstance(outcome, reading.Failure):
      logging.warning("skipping %s: %s (%s)", outcome.path, outcome.reason, outcome.detail)
      result.failures.append(outcome)
      continue
    name = _unique_name(outcome.path, taken_names) if save_inputs or explain_dir else None
    if save_inputs:
      Image.fromarray(outcome.image[:, :, 0]).save(pathlib.Path(save_inputs) / f"{name}.png")
    batch.append((outcome, name))
    if len(batch) == batch_size:
      flush()
  flush()
  return result


def _unique_name(path: str, taken: set) -> str:
  """The input file's name; a name already taken in this run gets `-2`, `-3`..."""
  name, number = pathlib.Path(path).name, 1
  while (candidate := name if number == 1 else f"{name}-{number}") in taken:
    number += 1
  taken.add(candidate)
  return candidate


def _write_heatmaps(folder: str, batch: list, heatmaps: np.ndarray):
  """`<folder>/<name>.npy` (the heatmap mapped onto the source pixels) and `.png` (its overlay) per image."""
  for (prepared, name), heatmap in zip(batch, heatmaps):
    pixels = prepared.source.pixels
    saliency_pictures.write_overlay(pathlib.Path(folder) / name, pixels,
                          imaging.output_to_source(heatmap, prepared.crop_box, prepared.flipped, pixels.shape))


def rows(result: Result, thresholds: dict, calibrate: Optional[Callable[[str, np.ndarray], np.ndarray]] = None):
  """(image rows, breast rows): dicts for predictions.csv / .json.

  Args:
    thresholds: {"image": t, "breast": t}, the run's operating point.
    calibrate: (level, raw scores) -> calibrated probabilities, or None.
  """
  missing = [level for level in LEVELS if level not in thresholds]
  if missing:
    raise ValueError(f"thresholds lack level(s) {', '.join(missing)}: got {sorted(thresholds)}")
  images = result.images
  scores = np.array([scored.score for scored in images], dtype=float)
  image_rows = []
  for scored, probability in zip(images, _calibrated(calibrate, "image", scores)):
    prepared, placement, score, why = scored.prepared, scored.placement, scored.score, scored.not_placed
    tags = prepared.source
    image_rows.append({
        "level": "image", "source": prepared.path,
        "patient_id": placement.patient_id if placement else tags.patient_id,
        "study": placement.study if placement else tags.study_uid,
        "laterality": placement.laterality if placement else tags.laterality,
        "view": placement.view if placement else tags.view,
        "views": 1, "score": score, "probability": probability, "threshold": float(thresholds["image"]),
        "decision": _decision(score, thresholds["image"]), "placed_by": placement.how if placement else "",
        "not_placed": why, "orientation": prepared.orientation, "flipped": prepared.flipped,
        "crop_box": [int(v) for v in prepared.crop_box], "admitted_by": tags.admitted_by,
        "view_modifiers": "+".join(tags.view_modifiers), "polarity_note": tags.polarity_note})
  placed = [(i, scored.placement) for i, scored in enumerate(images) if scored.placement]
  breast_rows = []
  if placed:
    # `pool_breasts` groups by patient + laterality; each breast gets a code as its "patient".
    codes = {}
    for _, placement in placed:
      codes.setdefault(placement.breast, f"{len(codes):09d}")
    members = collections.defaultdict(list)
    for i, placement in placed:
      members[codes[placement.breast]].append((images[i].prepared.path, placement))
    modifiers = {scored.prepared.path: scored.prepared.source.view_modifiers for scored in images}
    placed_codes = np.array([codes[p.breast] for _, p in placed])
    first, breast_scores = metrics.pool_breasts(placed_codes, [p.laterality for _, p in placed],
                                                scores[[i for i, _ in placed]])
    breast_codes = placed_codes[first]
    for code, score, probability in zip(breast_codes, breast_scores,
                                        _calibrated(calibrate, "breast", breast_scores)):
      views = members[code]
      placement = views[0][1]
      breast_rows.append({
          "level": "breast", "source": ";".join(path for path, _ in views), "patient_id": placement.patient_id,
          "study": placement.study, "laterality": placement.laterality,
          "view": "+".join(sorted({p.view or "?" for _, p in views})), "views": len(views),
          "score": float(score), "probability": probability, "threshold": float(thresholds["breast"]),
          "decision": _decision(score, thresholds["breast"]), "placed_by": placement.how, "not_placed": "",
          "orientation": "", "flipped": "", "crop_box": "", "admitted_by": "",
          "view_modifiers": "+".join(sorted({m for path, _ in views for m in modifiers[path]})),
          "polarity_note": ""})
  return image_rows, breast_rows


def _calibrated(calibrate, level: str, scores: np.ndarray) -> list:
  if calibrate is None:
    return [None] * len(scores)
  return [float(v) for v in np.asarray(calibrate(level, np.asarray(scores, dtype=float)), dtype=float)]


def _decision(score: float, threshold: float) -> str:
  """metrics.threshold_decisions' rule: malignant when the score reaches the threshold."""
  return metrics.BINARY_NAMES[int(metrics.threshold_decisions(np.array([score]), threshold)[0, 1])]


def summary(result: Result, image_rows: list, breast_rows: list) -> str:
  """The line that ends a prediction: what was scored and what was skipped, and why."""
  line = f"scored {len(image_rows)} of {len(image_rows) + len(result.failures)} files, {len(breast_rows)} breasts"
  unplaced = sum(1 for row in image_rows if row["not_placed"])
  if unplaced:
    line += f"; {unplaced} scored per image only (no breast)"
  disagreements = collections.Counter(row["orientation"] for row in image_rows if "disagree" in row["orientation"])
  if disagreements:
    line += "; chest wall side " + ", ".join(f"{n} {how}" for how, n in sorted(disagreements.items()))
  flagged = collections.Counter(m for row in image_rows for m in row["view_modifiers"].split("+") if m)
  if flagged:
    line += "; view modifiers " + ", ".join(f"{n} {name}" for name, n in sorted(flagged.items()))
  noted = sum(1 for row in image_rows if row["polarity_note"])
  if noted:
    line += f"; {noted} with a PixelIntensityRelationshipSign contradicting their polarity (not followed)"
  if result.failures:
    line += f"; skipped {len(result.failures)}: " + ", ".join(f"{n} {code}" for code, n in skip_counts(result).items())
  return line


def skip_counts(result: Result) -> dict:
  """{reason code: files skipped for it}, sorted by code."""
  return dict(sorted(collections.Counter(str(f.reason) for f in result.failures).items()))


def write(out_dir, identity: dict, result: Result, image_rows: list, breast_rows: list) -> tuple:
  """Writes predictions.csv (the run's identity on every row) and predictions.json; returns both paths.

  `identity`: the run's dataset name and version, model and threshold rule
  (whatever the caller names), kept in every output.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  skipped = [{"source": f.path, "reason": str(f.reason), "detail": f.detail} for f in result.failures]
  json_path, csv_path = out / "predictions.json", out / "predictions.csv"
  json_path.write_text(json.dumps({"run": identity, "summary": summary(result, image_rows, breast_rows),
                                   "images": image_rows, "breasts": breast_rows, "skipped": skipped,
                                   "skipped_by_reason": skip_counts(result)},
                                  indent=2) + "\n")
  fields = list(identity) + list((image_rows or breast_rows or [{"level": None}])[0])
  with open(csv_path, "w", newline="") as file:
    writer = csv.DictWriter(file, fieldnames=fields)
    writer.writeheader()
    for row in image_rows + breast_rows:
      writer.writerow({**identity, **{k: ("" if v is None else v) for k, v in row.items()}})
  return csv_path, json_path


def _progress_bar(done: int, total: int):
  print(f"\rpredict: {done}/{total} files", end="\n" if done == total else "", file=sys.stderr, flush=True)


def run(cfg: config.Predict, flagfile: str) -> tuple:
  """Scores cfg.paths with the run's model at its validation-chosen operating point; writes cfg.out.

  Args:
    cfg: the prediction's config.
    flagfile: the command's flags as --flagfile text, kept in cfg.out with the paths.

  Returns:
    (Result, summary line, predictions.csv path, predictions.json path, review.html path).

  Raises:
    config.ConfigError: a run, model, manifest or set of paths that cannot be used, named.
  """
  trained = run_folder.load(cfg.run, cfg.model)
  config.check(trained.operating_point, f"--run={cfg.run}: no eval/operating_point.json: the run's evaluation "
               "chooses the thresholds predictions are decided at (finish the run first)")
  try:  # the user's files: a damaged manifest or a bad glob is a usage error naming it
    manifest = discovery.read_manifest(cfg.manifest) if cfg.manifest else None
    files = discovery.expand_paths(cfg.paths)
  except ValueError as error:
    raise config.ConfigError(str(error)) from None
  config.check(files, f"no DICOM / PGM / PNG / JPEG / TIFF files in {' '.join(cfg.paths)}")
  if cfg.explain:
    config.check(trained.model.name in explain.CAM_LAYERS, f"--explain: no Grad-CAM layer is known for the "
                 f"model {trained.model.name!r} (known: {', '.join(sorted(explain.CAM_LAYERS))})")
  run_folder.write_flags(cfg.out, flagfile + "\n".join(cfg.paths) + "\n")
  # Converted copies are kept beside the model when the run folder is writable, else in --out.
  conversions = (trained.folder.runtimes if os.access(trained.folder.root, os.W_OK)
                 else os.path.join(cfg.out, run_folder.RUNTIMES))
  # A model trained under mixed precision is scored by Keras: a float32 graph's scores would differ from the
  # ones its threshold was chosen on.
  runtime = runtimes.resolve(cfg.runtime, classifiers.compute_policy(trained.model))
  scorer = runtimes.checked_forward(trained.model, runtime, conversions)
  result = predict_files(trained.model, files, stored_size=trained.stored_size, image_size=trained.model.input_shape[1],
                         batch_size=cfg.batch_size, manifest=manifest, allow_non_mammogram=cfg.allow_non_mammogram,
                         allow_view_modifiers=cfg.allow_view_modifiers,
                         save_inputs=os.path.join(cfg.out, "inputs") if cfg.save_inputs else None,
                         explain_dir=os.path.join(cfg.out, "explain") if cfg.explain else None,
                         score_with=scorer, progress=_progress_bar if sys.stderr.isatty() and len(files) > 8 else None)
  maps, operating = trained.calibration, trained.operating_point
  image_rows, breast_rows = rows(result, operating.thresholds,
                                 (lambda level, scores: maps[level].apply(scores)) if maps else None)
  rule = operating.rule or "given"
  measured = scorer.difference  # 3 significant digits: a 4-image sample says no more
  identity = {**trained.identity, "runtime": scorer.name,
              "runtime_difference": None if measured is None else float(f"{measured:.3g}"),
              "threshold_rule": f"{rule} {operating.target_recall:g}"
              if operating.target_recall else rule}
  csv_path, json_path = write(cfg.out, identity, result, image_rows, breast_rows)
  line = summary(result, image_rows, breast_rows)
  page = review.write(cfg.out, result, image_rows, line, "explain" if cfg.explain else None)
  return result, line, csv_path, json_path, page
