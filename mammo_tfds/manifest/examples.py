"""Any collection from a folder of images and a `manifest.csv`: rows, first pass, per-image examples.

Kept apart from the builder module so build workers (processes, Beam) can
import the per-image functions and records by name.

`manifest.csv` has one row per image. Required columns: `path` (relative to
the manifest's folder), `patient_id` (the split unit), `label` (benign /
malignant). Optional: `laterality` (L / R, or left / right), `view` (CC /
MLO), `split` (train / validation / test). Every other column is kept,
as it is, in the `metadata` feature: a JSON object of column -> text.

Images are read with `mammo_tfds.sources.read` (DICOM, 8- or 16-bit PNG,
JPEG, TIFF, PGM) and preprocessed like every other dataset. Laterality and
view come from the manifest where it gives them, else from the DICOM tags; a
DICOM's valid PatientOrientation is the chest-wall hint.

The build reads every image twice: the first pass (`scan`) decodes and hashes
the pixels so patients with identical images are grouped before any split is
decided; the second makes the examples.

What stops the build and what is skipped:
  fails   - no manifest.csv; a required column missing; a row with an empty
            path or patient_id, an unknown label / laterality / view / split
            value, or a path listed twice (file and row named); a split column
            filled on some rows only; a patient (or a group of patients with
            identical pixels) given two splits.
  skipped - a row whose file is missing or cannot be read; an image whose
            laterality or view is known neither from the manifest nor from its
            tags, or whose view is not CC / MLO; a blank image. Each is logged
            with the row and its `Reason` code and counted; MAMMO_STRICT=1 makes
            them errors. A row with a laterality vouches for its file being a
            mammogram (`sources.read(evidence="manifest")`).
"""
import collections
import csv
import dataclasses
import functools
import hashlib
import io
import json
from typing import Dict, List, Optional, Tuple

from etils import epath
import numpy as np

from mammo_tfds import audit, features, generation, imaging, sources, splits
from mammo_tfds.reasons import Reason
from mammo_tfds.sources import SourceError

MANIFEST = "manifest.csv"
REQUIRED = ("path", "patient_id", "label")
OPTIONAL = ("laterality", "view", "split")
LATERALITIES = {"l": "L", "left": "L", "r": "R", "right": "R"}
VIEWS = {"cc": "CC", "mlo": "MLO"}
SPLIT_SEED = 0



@dataclasses.dataclass(frozen=True)
class Row:
  """One manifest row, checked."""
  line: int  # in manifest.csv, the header being line 1
  path: str
  patient_id: str
  label: int  # index into features.LABELS
  laterality: Optional[str]
  view: Optional[str]
  split: Optional[str]
  metadata: str  # JSON object of the other columns


@dataclasses.dataclass(frozen=True)
class Scanned:
  """What the first pass keeps of one usable image: its row, resolved tags and a pixel hash."""
  row: Row
  laterality: str
  view: str
  chest_wall: Optional[str]
  digest: str


def _choice(value: str, allowed: dict, where: str, column: str, required: bool) -> Optional[str]:
  text = (value or "").strip()
  if not text and not required:
    return None
  if text.lower() not in allowed:
    raise SourceError(where, f"unknown {column} {text!r} (expected one of: {', '.join(sorted(set(allowed)))})")
  return allowed[text.lower()]


def read_manifest(manual_dir) -> List[Row]:
  """Parses and checks manifest.csv: a misspelt label would otherwise silently mislabel an image."""
  path = epath.Path(manual_dir) / MANIFEST
  if not path.exists():
    raise SourceError(manual_dir, f"no {MANIFEST} in the manual dir (columns: {', '.join(REQUIRED)}, "
                      f"optional {', '.join(OPTIONAL)}; see mammo_tfds/manifest/README.md)")
  reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
  header = [name.strip() for name in reader.fieldnames or []]
  reader.fieldnames = header
  missing = [column for column in REQUIRED if column not in header]
  if missing:
    raise SourceError(path, f"missing column(s) {', '.join(missing)}; columns found: {', '.join(header)}")
  extra = [column for column in header if column not in REQUIRED + OPTIONAL]
  rows, seen = [], {}
  for record in reader:
    line = reader.line_num
    if not any((value or "").strip() for value in record.values()):
      continue
    where = f"{MANIFEST} line {line}"
    relative, patient = (record["path"] or "").strip(), (record["patient_id"] or "").strip()
    if not relative or not patient:
      raise SourceError(where, "path and patient_id must not be empty")
    if relative in seen:
      raise SourceError(where, f"path {relative!r} is also on line {seen[relative]}")
    seen[relative] = line
    rows.append(Row(
        line=line, path=relative, patient_id=patient,
        label=features.LABELS.index(_choice(record["label"], {n: n for n in features.LABELS}, where, "label", True)),
        laterality=_choice(record.get("laterality"), LATERALITIES, where, "laterality", False),
        view=_choice(record.get("view"), VIEWS, where, "view", False),
        split=_choice(record.get("split"), {s: s for s in splits.SPLITS}, where, "split", False),
        metadata=json.dumps({column: (record[column] or "").strip() for column in extra}, sort_keys=True)))
  given = [row.split is not None for row in rows]
  if any(given) and not all(given):
    first = next(row for row in rows if row.split is None)
    raise SourceError(f"{MANIFEST} line {first.line}", "no split, but other rows have one: fill the split "
                      "column on every row, or leave it empty on all to have splits assigned by patient")
  return rows


def _digest(pixels: np.ndarray) -> str:
  return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


def scan_row(manual_dir: str, row: Row):
  """First pass over one row (in a worker process): Scanned, or a Skip with the reason."""
  where = f"{MANIFEST} line {row.line} ({row.path})"
  path = epath.Path(manual_dir) / row.path
  if not path.exists():
    return generation.Skip(where, Reason.not_found, "no such file")
  try:
    image = sources.read(str(path), evidence="manifest" if row.laterality else None)
    imaging.breast_box(imaging.film_on_black(image.pixels), row.path)
  except SourceError as error:
    return generation.Skip(where, error.code, error.problem)
  except imaging.BlankImageError as error:
    return generation.Skip(where, Reason.blank, str(error))
  laterality = row.laterality or image.laterality
  view = row.view or image.view
  if laterality not in ("L", "R"):
    return generation.Skip(where, Reason.no_laterality, "no laterality column value and no laterality tag")
  if view not in ("CC", "MLO"):
    return generation.Skip(where, Reason.no_view, "no view column value and no CC / MLO view in the tags")
  return Scanned(row, laterality, view, image.chest_wall, _digest(image.pixels))


def scan(manual_dir, rows: List[Row], skip_log) -> List[Scanned]:
  """Every row's image read and hashed on the build workers; skips logged and counted."""
  result = []
  for outcome in generation.parallel_map(functools.partial(scan_row, str(manual_dir)), rows):
    if isinstance(outcome, generation.Skip):
      skip_log.skip(outcome.path, outcome.reason, outcome.detail)
    else:
      result.append(outcome)
  return result


def duplicate_links(scanned: List[Scanned]) -> List[Tuple[str, str]]:
  """Pairs of patients whose images have identical pixels: they must share a split."""
  by_digest = collections.defaultdict(list)
  for image in scanned:
    by_digest[image.digest].append(image.row.patient_id)
  return [(patients[0], other) for patients in by_digest.values() for other in patients[1:]
          if other != patients[0]]


def assign_splits(scanned: List[Scanned]) -> Dict[str, str]:
  """Patient -> split: the manifest's own (checked: no patient or duplicate group in two), else by patient,
  stratified (malignant if any image is) and deterministic, duplicates grouped."""
  links = duplicate_links(scanned)
  if scanned and scanned[0].row.split is not None:
    group_of = splits.connected_groups({image.row.patient_id for image in scanned}, links)
    split_of_group, first_row = {}, {}
    for image in scanned:
      group = group_of[image.row.patient_id]
      if split_of_group.setdefault(group, image.row.split) != image.row.split:
        raise SourceError(f"{MANIFEST} line {image.row.line}", (
            f"patient {image.row.patient_id} is in split {image.row.split!r} here but in "
            f"{split_of_group[group]!r} on line {first_row[group]}"
            + (" (patients with identical pixels count as one)" if group != image.row.patient_id else "")))
      first_row.setdefault(group, image.row.line)
    return {patient: split_of_group[group] for patient, group in group_of.items()}
  strata = collections.defaultdict(int)
  for image in scanned:
    strata[image.row.patient_id] = max(strata[image.row.patient_id], image.row.label)
  return splits.assign_patients(strata, links, seed=SPLIT_SEED)


def image_example(manual_dir: str, image_size: int, scanned: Scanned) -> list:
  """Second pass over one image (in a worker process): [(path, example)]."""
  row = scanned.row
  image = sources.read(str(epath.Path(manual_dir) / row.path), evidence="manifest" if row.laterality else None)
  if _digest(image.pixels) != scanned.digest:
    raise SourceError(row.path, "file changed while the dataset was being built", Reason.changed)
  result = imaging.preprocess(image.pixels, image_size, source=row.path, chest_wall=scanned.chest_wall,
                              laterality=scanned.laterality)
  return [(row.path, features.example(
      result, image_size, label=row.label, patient_id=row.patient_id, laterality=scanned.laterality,
      view=scanned.view, source=row.path, metadata=row.metadata, orientation=result.orientation)),
          audit.seen(row.path, image.pixels, result, image)]
