"""New source files -> per-image and per-breast scores and decisions at a run's operating point.

  python -m mammo_train.predict --run=runs/synthetic --out=predictions scans/ more/*.dcm
  python -m mammo_train.predict --run=runs/cmmd --manifest=exams.csv --save_inputs --out=out pngs/
  python -m mammo_train.predict --run=runs/synthetic --explain --out=out scans/

Exit status: 0 when every file was scored, 1 when some were skipped (each
named with its reason on stderr, and in predictions.json), 2 for a usage
error (a bad flag, no files, a run folder or model that cannot be used). Files go
through `mammo_tfds.sources.read` and `mammo_tfds.imaging.preprocess` exactly
as a builder takes them, at the dataset's stored size, and then through the
trainer's own `data.resize` to the model's input size, so a model sees what it
was evaluated on.

- Files: `expand_paths` takes files, folders (searched recursively) and globs.
- Parallel and flat in memory: `prepared_stream` reads and preprocesses files
  on a pool of worker processes (`generation.build_workers()`), in order, with
  at most `window` files in flight, so memory does not grow with the number
  of files however slow the model is.
- Breasts: a DICOM image belongs to the breast (PatientID, StudyInstanceUID,
  laterality) of its tags; another file to the breast of its manifest row
  (`read_manifest`), else of its name when it follows one of NYU's patterns,
  `<exam>_<L|R>_<CC|MLO>.<ext>` (breast_cancer_classifier) or
  `<exam>_<L|R>-<CC|MLO>.<ext>` (GMIC) (patient: the folder and the exam, e.g.
  `nyu/0_L-CC.png` -> patient `nyu/0`, left). A file the manifest lists is
  read as vouched for (`sources.read(evidence="manifest")`): the row is
  the evidence that it is a mammogram. An image that cannot be placed
  is scored per image only, and says why.
- Scores: per image the model's P(malignant); per breast the mean of its
  views' scores (`metrics.breast_level`, the evaluation's rule); each level's
  decision is "malignant" when its score reaches that level's threshold.
- Bad files: one line each naming the file, its `Reason` code and the
  problem; the rest are scored. The summary line and predictions.json
  (`skipped_by_reason`) count them by code.
- View modifiers (`SourceImage.view_modifiers`): stereotactic and specimen
  images are refused (codes `stereotactic`, `specimen`) unless
  `--allow_view_modifiers`; spot, magnification, implant displaced and
  synthesized 2D images are scored and named in the `view_modifiers`
  column, beside `admitted_by` (the rule that made the file a mammogram)
  and `polarity_note`.
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
import functools
import glob
import json
import multiprocessing
import os
import pathlib
import re
import sys
from typing import Callable, Iterable, Iterator, Optional, Sequence

from absl import flags, logging
import numpy as np
from PIL import Image

from mammo_tfds import audit, generation, imaging, sources
from mammo_tfds.reasons import Reason
from mammo_train import calibration, cli, config, data, explain, metrics, review, runtime
from mammo_train.inference import runtimes

SUPPORTED_SUFFIXES = sources.RASTER_SUFFIXES + sources.DICOM_SUFFIXES
# NYU's two naming styles: breast_cancer_classifier `<exam>_<L|R>_<CC|MLO>`, GMIC `<exam>_<L|R>-<CC|MLO>`.
NYU_NAME = re.compile(r"^(?P<exam>.+)_(?P<laterality>[LR])[-_](?P<view>CC|MLO)$")
# View modifiers (sources.VIEW_MODIFIERS) a screening model is not scored on unless --allow_view_modifiers.
REFUSED_VIEW_MODIFIERS = {"stereotactic": Reason.stereotactic, "specimen": Reason.specimen}
MANIFEST_COLUMNS = ("path", "patient_id", "laterality")  # required; "view" optional
LEVELS = ("image", "breast")


@dataclasses.dataclass(frozen=True)
class Prepared:
  """One file read and preprocessed, with its tags."""
  path: str
  image: np.ndarray  # (stored_size, stored_size, 1) uint8
  source: sources.SourceImage  # pixels dropped (unless kept for --explain): only the tags travel back
  crop_box: np.ndarray
  flipped: bool
  orientation: str
  thumbnails: tuple = ()  # small JPEGs for review.html: the source with the crop box, the stored input



@dataclasses.dataclass(frozen=True)
class Failure:
  """A file that was not scored, with the reason."""
  path: str
  reason: Reason  # the code, e.g. Reason.not_mammogram
  detail: str  # the one-line problem


@dataclasses.dataclass(frozen=True)
class Placement:
  """The breast an image belongs to, and what said so."""
  patient_id: str
  study: str
  laterality: str
  view: Optional[str]
  how: str  # "DICOM tags", "manifest", "file name"

  @property
  def breast(self) -> tuple:
    return self.patient_id, self.study, self.laterality


# ---- files --------------------------------------------------------------------


def expand_paths(paths: Sequence[str]) -> list:
  """Files to predict on: each PATH a file (used whatever its suffix), folder or glob.

  In folders (recursively) and glob matches that are folders, files with a
  supported suffix count, and so do files without a suffix that start like a
  DICOM file (PACS exports often have no suffix). In PATH order, each
  folder's and pattern's files sorted, without duplicates.

  Raises:
    ValueError: a PATH that is neither a file nor a folder and matches nothing.
  """
  found = []
  for path in paths:
    matches = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else [path]
    if not matches or not os.path.exists(matches[0]):
      raise ValueError(f"{path}: no such file or folder" if not glob.has_magic(path) else
                       f"{path}: the pattern matches nothing")
    for match in matches:
      if os.path.isdir(match):
        found += [str(p) for p in sorted(pathlib.Path(match).rglob("*")) if p.is_file() and _supported(p)]
      else:
        found.append(match)
  return list(dict.fromkeys(os.path.normpath(p) for p in found))


def _supported(path: pathlib.Path) -> bool:
  if path.suffix.lower() in SUPPORTED_SUFFIXES:
    return True
  if path.suffix:
    return False
  with open(path, "rb") as file:
    return file.read(132)[128:] == b"DICM"


# ---- reading and preprocessing, in parallel -------------------------------------


def prepare(path: str, stored_size: int, allow_non_mammogram: bool = False, keep_pixels: bool = False,
            vouched: bool = False, allow_view_modifiers: bool = False):
  """Reads and preprocesses one file (in a worker process): Prepared, or Failure with the reason code.

  `vouched`: the file is in the user's manifest, which is evidence that it
  is a mammogram (`sources.read(evidence="manifest")`). Stereotactic and
  specimen images are refused unless `allow_view_modifiers`. The source
  pixels are sent back only with `keep_pixels` (for an overlay on them):
  otherwise a full-field image would cross processes for nothing.
  """
  try:
    image = sources.read(path, allow_non_mammogram=allow_non_mammogram, evidence="manifest" if vouched else None)
    refused = [m for m in image.view_modifiers if m in REFUSED_VIEW_MODIFIERS]
    if refused and not allow_view_modifiers:
      return Failure(path, REFUSED_VIEW_MODIFIERS[refused[0]], f"a {refused[0]} image, not a screening view "
                     "(--allow_view_modifiers scores it anyway)")
    result = imaging.preprocess(image.pixels, stored_size, path, image.chest_wall, image.laterality)
  except sources.SourceError as error:
    return Failure(path, error.code, error.problem)
  except imaging.BlankImageError as error:
    return Failure(path, Reason.blank, str(error).split(": ", 1)[-1])
  except Exception as error:  # pylint: disable=broad-except
    # One odd file (a reader bug, a decoder crash) must not lose the others' scores.
    return Failure(path, Reason.unexpected_error, f"{type(error).__name__}: {error}")
  source = image if keep_pixels else dataclasses.replace(image, pixels=np.zeros((0, 0), np.uint8))
  thumbnails = (audit.source_thumbnail(image.pixels, result.crop_box), audit.stored_thumbnail(result.image))
  return Prepared(path, result.image, source, result.crop_box, result.flipped, result.orientation, thumbnails)


def prepared_stream(files: Iterable[str], stored_size: int, *, workers: Optional[int] = None,
                    window: Optional[int] = None, allow_non_mammogram: bool = False,
                    keep_pixels: bool = False, vouched: frozenset = frozenset(),
                    allow_view_modifiers: bool = False) -> Iterator:
  """Prepared / Failure per file, in order, read on `workers` processes (default `generation.build_workers()`).

  `vouched`: absolute paths of the files a manifest lists (see `prepare`).
  At most `window` files (default 4 per worker) are in flight or waiting to
  be taken, so memory stays flat in the number of files. Workers are forked
  and run numpy / Pillow / pydicom only, never TF (as the builders' workers).
  """
  fn = functools.partial(prepare, stored_size=stored_size, allow_non_mammogram=allow_non_mammogram,
                         keep_pixels=keep_pixels, allow_view_modifiers=allow_view_modifiers)
  workers = workers or generation.build_workers()
  files = iter(files)
  if workers == 1:
    yield from (fn(path, vouched=os.path.abspath(path) in vouched) for path in files)
    return
  window = window or 4 * workers
  with multiprocessing.get_context("fork").Pool(workers) as pool:
    pending = collections.deque()
    for path in files:
      pending.append(pool.apply_async(fn, (path,), {"vouched": os.path.abspath(path) in vouched}))
      if len(pending) >= window:
        yield pending.popleft().get()
    while pending:
      yield pending.popleft().get()


# ---- placing images into breasts --------------------------------------------------


def read_manifest(path) -> dict:
  """Absolute file path -> Placement, from a CSV with columns path, patient_id, laterality (, view).

  Relative paths are relative to the CSV's folder. Extra columns are ignored.

  Raises:
    ValueError: naming the file (and row) that is wrong.
  """
  path = pathlib.Path(path)
  try:
    with open(path, newline="", encoding="utf-8-sig") as file:
      reader = csv.DictReader(file)
      missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
      if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {', '.join(missing)} "
                         f"(needs {', '.join(MANIFEST_COLUMNS)}, optional view)")
      rows = list(reader)
  except OSError as error:
    raise ValueError(f"{path}: cannot read the manifest ({error.strerror})") from None
  placements = {}
  for number, row in enumerate(rows, start=2):
    laterality = (row["laterality"] or "").strip().upper()
    view = (row.get("view") or "").strip().upper() or None
    patient = (row["patient_id"] or "").strip()
    if laterality not in ("L", "R") or not patient or view not in (None, "CC", "MLO"):
      raise ValueError(f"{path} row {number}: needs a patient_id, laterality L or R and view CC, MLO or empty; "
                       f"got {patient!r}, {row['laterality']!r}, {row.get('view')!r}")
    file = pathlib.Path(row["path"].strip())
    key = os.path.abspath(file if file.is_absolute() else path.parent / file)
    placements[key] = Placement(patient, str(path), laterality, view, "manifest")
  return placements


def place(prepared: Prepared, manifest: Optional[dict] = None):
  """(Placement, None), or (None, why it cannot be placed); see the module docstring."""
  tags = prepared.source
  if tags.format == "dicom":
    missing = [name for name, value in (("PatientID", tags.patient_id), ("StudyInstanceUID", tags.study_uid),
                                        ("laterality", tags.laterality)) if not value]
    if missing:
      return None, f"no {', '.join(missing)} tag"
    return Placement(tags.patient_id, tags.study_uid, tags.laterality, tags.view, "DICOM tags"), None
  if manifest is not None and os.path.abspath(prepared.path) in manifest:
    return manifest[os.path.abspath(prepared.path)], None
  path = pathlib.Path(prepared.path)
  match = NYU_NAME.match(path.stem)
  if match:
    folder = str(path.parent)
    return Placement(f"{folder}/{match['exam']}", folder, match["laterality"], match["view"], "file name"), None
  return None, "not in the manifest" if manifest is not None else "no manifest row or <exam>_<L|R>[-_]<CC|MLO> name"


# ---- scoring --------------------------------------------------------------------


def _scores(model, batch: np.ndarray) -> np.ndarray:
  """P(malignant) per image of a uint8 batch at the model's input size, as `evaluate.predict` reads the output."""
  predict_batch = getattr(model, "predict_on_batch", model)
  outputs = np.asarray(predict_batch(batch), dtype=float)
  if outputs.ndim != 2 or outputs.shape[0] != len(batch) or outputs.shape[1] not in (1, 2):
    raise ValueError(f"the model gave outputs of shape {outputs.shape} for {len(batch)} images: "
                     "expected [B, 1] or [B, 2] (binary task)")
  return outputs[:, -1]


@dataclasses.dataclass(frozen=True)
class Scored:
  """One scored image: its file and tags (images dropped), its breast, its score."""
  prepared: Prepared
  placement: Optional[Placement]
  score: float
  not_placed: str  # why it has no breast, or ""
  name: str = ""  # its files' name under inputs/ and explain/ (with --save_inputs / --explain)


@dataclasses.dataclass
class Result:
  """What `predict_files` found."""
  images: list  # Scored, in file order
  failures: list  # Failure


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
      model of `mammo_train.models`); the same name as in `save_inputs`.
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
        placement, why = place(prepared, manifest)
        if why:
          logging.warning("%s: %s: scored per image only", prepared.path, why)
        dropped = dataclasses.replace(prepared, image=np.zeros((0, 0, 1), np.uint8),
                                      source=dataclasses.replace(prepared.source, pixels=np.zeros((0, 0), np.uint8)))
        result.images.append(Scored(dropped, placement, float(score), why or "", name or ""))
      batch.clear()
    if progress:
      progress(done, len(files))

  for outcome in prepared_stream(files, stored_size, workers=workers, allow_non_mammogram=allow_non_mammogram,
                                 allow_view_modifiers=allow_view_modifiers, vouched=frozenset(manifest or ()),
                                 keep_pixels=bool(explain_dir)):
    done += 1
    if isinstance(outcome, Failure):
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
    explain.write_overlay(pathlib.Path(folder) / name, pixels,
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
    # `breast_level` groups by patient + laterality; each breast gets a code as its "patient".
    codes = {}
    for _, placement in placed:
      codes.setdefault(placement.breast, f"{len(codes):09d}")
    members = collections.defaultdict(list)
    for i, placement in placed:
      members[codes[placement.breast]].append((images[i].prepared.path, placement))
    modifiers = {scored.prepared.path: scored.prepared.source.view_modifiers for scored in images}
    _, breast_scores, _, breast_codes = metrics.breast_level(
        np.zeros(len(placed), int), scores[[i for i, _ in placed]], np.zeros((len(placed), 2)),
        [codes[p.breast] for _, p in placed], [p.laterality for _, p in placed])
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


def main(argv):
  cfg = config.predict_from_flags(flags.FLAGS, argv[1:])
  trained = runtime.load_trained_run(cfg.run, cfg.model)
  config.check(trained.operating_point, f"--run={cfg.run}: no eval/operating_point.json: the run's evaluation "
               "chooses the thresholds predictions are decided at (finish the run first)")
  with open(trained.operating_point) as f:
    operating = json.load(f)
  try:  # the run's and the user's files: a damaged one is a usage error naming it
    maps = calibration.load(trained.calibration) if trained.calibration else None
    manifest = read_manifest(cfg.manifest) if cfg.manifest else None
  except ValueError as error:
    raise config.ConfigError(str(error)) from None
  try:
    files = expand_paths(cfg.paths)
  except ValueError as error:
    raise config.ConfigError(str(error)) from None
  config.check(files, f"no DICOM / PGM / PNG / JPEG / TIFF files in {' '.join(cfg.paths)}")
  if cfg.explain:
    config.check(trained.model.name in explain.CAM_LAYERS, f"--explain: no Grad-CAM layer is known for the "
                 f"model {trained.model.name!r} (known: {', '.join(sorted(explain.CAM_LAYERS))})")
  runtime.write_flags(cfg.out, config.flagfile(flags.FLAGS, config.PREDICT_FLAGS) + "\n".join(cfg.paths) + "\n")
  # Converted copies are kept beside the model when the run folder is writable, else in --out.
  conversions = os.path.join(trained.folder if os.access(trained.folder, os.W_OK) else cfg.out, "runtimes")
  scorer = runtimes.checked_forward(trained.model, runtimes.resolve(cfg.runtime), conversions)
  result = predict_files(trained.model, files, stored_size=trained.stored_size, image_size=trained.model.input_shape[1],
                         batch_size=cfg.batch_size, manifest=manifest, allow_non_mammogram=cfg.allow_non_mammogram,
                         allow_view_modifiers=cfg.allow_view_modifiers,
                         save_inputs=os.path.join(cfg.out, "inputs") if cfg.save_inputs else None,
                         explain_dir=os.path.join(cfg.out, "explain") if cfg.explain else None,
                         score_with=scorer, progress=_progress_bar if sys.stderr.isatty() and len(files) > 8 else None)
  image_rows, breast_rows = rows(result, operating["thresholds"],
                                 (lambda level, scores: maps[level].apply(scores)) if maps else None)
  rule = operating.get("rule") or "given"
  identity = {**trained.identity, "runtime": scorer.name, "threshold_rule": f"{rule} {operating['target_recall']:g}"
              if operating.get("target_recall") else rule}
  csv_path, json_path = write(cfg.out, identity, result, image_rows, breast_rows)
  page = review.write(cfg.out, result, image_rows, summary(result, image_rows, breast_rows),
                      "explain" if cfg.explain else None)
  for failure in result.failures:
    print(f"mammo_train.predict: skipped {failure.path}: {failure.reason} ({failure.detail})", file=sys.stderr)
  print(f"{summary(result, image_rows, breast_rows)}\npredictions: {csv_path}, {json_path}; review: {page}")
  if result.failures:
    sys.exit(1)


if __name__ == "__main__":
  cli.run("mammo_train.predict", config.define_predict_flags, main, takes_paths=True)
