"""Reading the CMMD collection: the clinical sheet, the DICOM tree, the label join.

Kept apart from the builder module so build workers (processes, Beam) can
import the per-image functions and records by name.

The Chinese Mammography Database (CMMD), labelled per breast.

Labels come from the clinical sheet, one row per breast, and are joined to an
image on (PatientID, ImageLaterality) = (ID1, LeftRight), read from the DICOM
tags. Joining on the patient alone would give the unlabelled contralateral
breast of a patient the labelled breast's pathology; images of breasts with
no row are left out instead.

The build reads every file twice. The first pass (`scan`) reads tags and
hashes decoded pixels, keeping no pixels, so that all exclusions are known
and patients whose images are pixel-identical (D1-0202 / D2-0284, D1-0808 /
D1-1292 in the real data) are merged into one split group before anything is
written. The second pass (`_generate_examples`) re-reads and preprocesses.

What stops the build and what is skipped:
  fails   - no DICOM or no clinical sheet in the manual dir, or two sheets;
            a sheet column missing or renamed; a sheet value that is not
            one of the known ones (the message names file, row and value);
            two rows for one breast.
  skipped - a DICOM that cannot be read or decoded, or lacks PatientID,
            laterality or view; a blank image; a sheet row with fewer images
            than its `number` says. Each is logged with the file when it
            happens and counted in the summary; MAMMO_STRICT=1 makes them
            errors.
  left out by design - images of breasts with no sheet row (1,458 in the real
            data): counted, never an error, even in strict mode.
"""
import collections
import csv
import dataclasses
import functools
import hashlib
import io
from typing import Dict, Tuple

from absl import logging
from etils import epath
import numpy as np
import openpyxl

from mammo_tfds import audit, features, generation, imaging, skips, sources, splits
from mammo_tfds.features import LABELS
from mammo_tfds.reasons import Reason

SHEET_COLUMNS = ("ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype")
CLASSIFICATIONS = {"benign": 0, "malignant": 1}  # index into LABELS
ABNORMALITIES = ("mass", "calcification", "both")
SPLIT_SEED = 0

NO_SHEET_ROW = "no clinical sheet row (by design)"


@dataclasses.dataclass(frozen=True)
class SheetRow:
  """One labelled breast."""
  row: int  # as a spreadsheet shows it: the header is row 1
  patient_id: str
  laterality: str
  age: int  # -1 if missing
  number: int  # images of the breast
  abnormality: str
  label: int
  subtype: str


@dataclasses.dataclass(frozen=True)
class ScannedImage:
  """What the first pass keeps of one usable image: tags and a pixel hash, no pixels."""
  path: str  # relative to the manual dir, posix
  patient_id: str
  laterality: str
  view: str
  digest: str


def find_inputs(manual_dir) -> Tuple[list, epath.Path]:
  """All DICOMs under `manual_dir` (any depth, any name) and the one clinical sheet.

  The sheet is any `*clinicaldata*.xlsx` or `.csv` (Excel's `~$` lock files
  aside); two of them are ambiguous, so that is an error. Paths are epath
  (as TFDS asks of builders), so the walk also works on non-local file systems.
  """
  root = epath.Path(manual_dir)
  dicoms, sheets = [], []
  for folder, _, names in root.walk():
    for name in names:
      lower = name.lower()
      if lower.endswith(".dcm"):
        dicoms.append(folder / name)
      elif "clinicaldata" in lower and lower.endswith((".xlsx", ".csv")) and not name.startswith("~$"):
        sheets.append(folder / name)
  if not dicoms:
    raise sources.SourceError(root, "no .dcm files found under the manual dir (see the download instructions)")
  if len(sheets) != 1:
    found = ", ".join(str(s) for s in sorted(sheets)) or "none"
    raise sources.SourceError(
        root, f"expected one clinical sheet (CMMD_clinicaldata_revision.xlsx or a CSV export), found {found}")
  return sorted(dicoms), sheets[0]


def _table(path: epath.Path):
  """Header and (row number, values) of the sheet's first worksheet or of a CSV export."""
  if path.suffix.lower() == ".csv":
    lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
  else:
    try:
      with path.open("rb") as handle:
        book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
        lines = [list(values) for values in book.worksheets[0].iter_rows(values_only=True)]
        book.close()
    except Exception as error:  # openpyxl and zipfile raise several types for bad files
      raise sources.SourceError(path, f"not a readable .xlsx file ({type(error).__name__}: {error})") from None
  if not lines:
    raise sources.SourceError(path, "the clinical sheet is empty")
  header = ["" if cell is None else str(cell).strip() for cell in lines[0]]
  return header, [(number, values) for number, values in enumerate(lines[1:], start=2)]


def _blank(value) -> bool:
  return value is None or (isinstance(value, str) and not value.strip())


def _whole_number(value, path, where, column, missing=None) -> int:
  if _blank(value) and missing is not None:
    return missing
  try:
    number = float(value)
  except (TypeError, ValueError):
    number = float("nan")
  if not number.is_integer():
    raise sources.SourceError(path, f"{where}: {column} {value!r} is not a whole number")
  return int(number)


def _choice(value, allowed, path, where, column) -> str:
  text = "" if value is None else str(value).strip()
  if text.lower() not in allowed:
    raise sources.SourceError(
        path, f"{where}: unknown {column} {text!r} (expected one of: {', '.join(allowed)})")
  return text.lower()


def _parse_row(path, number: int, record: dict) -> SheetRow:
  where = f"row {number} (ID1 {record['ID1']!r}, LeftRight {record['LeftRight']!r})"
  patient_id = "" if record["ID1"] is None else str(record["ID1"]).strip()
  if not patient_id:
    raise sources.SourceError(path, f"{where}: ID1 is empty")
  return SheetRow(
      row=number,
      patient_id=patient_id,
      laterality=_choice(record["LeftRight"], ("l", "r"), path, where, "LeftRight").upper(),
      age=_whole_number(record["Age"], path, where, "Age", missing=-1),
      number=_whole_number(record["number"], path, where, "number"),
      abnormality=_choice(record["abnormality"], ABNORMALITIES, path, where, "abnormality"),
      label=CLASSIFICATIONS[_choice(record["classification"], tuple(CLASSIFICATIONS), path, where,
                                    "classification")],
      subtype="" if _blank(record["subtype"]) else str(record["subtype"]).strip())


def read_sheet(path) -> Dict[Tuple[str, str], SheetRow]:
  """Parses and validates the clinical sheet: (ID1, LeftRight) -> SheetRow.

  Every value is checked, and a problem stops the build with the file, row and
  value named: a misspelt label would otherwise silently drop or mislabel a
  breast.
  """
  path = epath.Path(path)
  header, lines = _table(path)
  missing = [column for column in SHEET_COLUMNS if column not in header]
  if missing:
    raise sources.SourceError(
        path, f"missing column(s) {', '.join(missing)}; columns found: {', '.join(h for h in header if h)}")
  index = {column: header.index(column) for column in SHEET_COLUMNS}
  rows = {}
  for number, values in lines:
    if all(_blank(value) for value in values):
      continue
    values = list(values) + [None] * (len(header) - len(values))
    row = _parse_row(path, number, {column: values[i] for column, i in index.items()})
    key = (row.patient_id, row.laterality)
    if key in rows:
      raise sources.SourceError(path, f"rows {rows[key].row} and {number} are both for {key[0]} {key[1]}")
    rows[key] = row
  return rows


def scan_file(path: epath.Path, relative: str) -> ScannedImage:
  """Reads tags, checks the image is not blank, and hashes the decoded 8-bit pixels.

  Raises:
    SourceError / BlankImageError: the file cannot be used.
  """
  image = sources.read_dicom(path)
  imaging.breast_box(image.pixels, relative)
  return ScannedImage(relative, image.patient_id, image.laterality, image.view, _digest(image.pixels))


def _digest(pixels: np.ndarray) -> str:
  return hashlib.sha256(f"{pixels.shape}".encode() + pixels.tobytes()).hexdigest()


@dataclasses.dataclass
class Scan:
  """The outcome of the first pass."""
  labelled: list  # (ScannedImage, SheetRow)
  without_row: list  # relative paths of images of breasts with no sheet row
  skip_log: skips.SkipLog


def _scan_one(root: str, path: str):
  """First pass over one file (in a worker process): ScannedImage, or Skip with the reason."""
  relative = epath.Path(path).relative_to(root).as_posix()
  try:
    return scan_file(epath.Path(path), relative)
  except imaging.BlankImageError as error:
    return generation.Skip(relative, Reason.blank, str(error))
  except sources.SourceError as error:
    return generation.Skip(relative, error.code, error.problem)


def scan(manual_dir, skip_log: skips.SkipLog) -> Scan:
  """First pass: every DICOM's tags and pixel hash, joined to its sheet row.

  Files are read on all build workers (`generation.parallel_map`); the result
  does not depend on their number.
  """
  root = epath.Path(manual_dir)
  dicoms, sheet = find_inputs(root)
  rows = read_sheet(sheet)
  labelled, without_row = [], []
  for outcome in generation.parallel_map(functools.partial(_scan_one, str(root)), [str(p) for p in dicoms]):
    if isinstance(outcome, generation.Skip):
      skip_log.skip(outcome.path, outcome.reason, outcome.detail)
      continue
    row = rows.get((outcome.patient_id, outcome.laterality))
    if row is None:
      without_row.append(outcome.path)
    else:
      labelled.append((outcome, row))
  found = collections.Counter((row.patient_id, row.laterality) for _, row in labelled)
  for key, row in sorted(rows.items()):
    if found[key] < row.number:
      skip_log.skip(f"{sheet.name} row {row.row}", Reason.missing_images,
                    f"{key[0]} {key[1]}: found {found[key]} of {row.number} images")
  return Scan(labelled, without_row, skip_log)


def duplicate_sets(labelled) -> list:
  """Lists of (ScannedImage, SheetRow) whose pixels are identical, sorted by path."""
  by_digest = collections.defaultdict(list)
  for image, row in labelled:
    by_digest[image.digest].append((image, row))
  return [sorted(same, key=lambda pair: pair[0].path) for same in by_digest.values() if len(same) > 1]


def assign_splits(labelled, duplicates) -> Dict[str, str]:
  """Patient -> split. Patients sharing pixels form one group, malignant if any breast is."""
  strata = collections.defaultdict(int)
  for image, row in labelled:
    strata[image.patient_id] = max(strata[image.patient_id], row.label)
  links = [(same[0][0].patient_id, image.patient_id) for same in duplicates for image, _ in same[1:]]
  return splits.assign_patients(strata, links, seed=SPLIT_SEED)


def report(result: Scan, duplicates) -> dict:
  """Logs the duplicate groups; returns what the first pass found, for the dataset's metadata."""
  conflicting = []
  for same in duplicates:
    paths = [image.path for image, _ in same]
    logging.info("cmmd: identical pixels, kept in one split: %s", ", ".join(paths))
    if len({row.label for _, row in same}) > 1:
      labels = ", ".join(f"{image.path}={LABELS[row.label]}" for image, row in same)
      logging.warning("cmmd: identical pixels with different labels, both kept: %s", labels)
      conflicting.append(paths)
  return {
      "kept_images": len(result.labelled),
      "images_without_sheet_row": len(result.without_row),
      "skipped": {reason: paths for reason, paths in sorted(result.skip_log.skipped.items())},
      "identical_pixels": [[image.path for image, _ in same] for same in duplicates],
      "identical_pixels_different_labels": conflicting,
  }



def labelled_example(manual_dir: str, image_size: int, pair) -> list:
  """Second pass over one labelled image (in a worker process): [(key, example)]."""
  scanned, row = pair
  image = sources.read_dicom(epath.Path(manual_dir) / scanned.path)
  if _digest(image.pixels) != scanned.digest:
    raise sources.SourceError(scanned.path, "file changed while the dataset was being built", Reason.changed)
  result = imaging.preprocess(image.pixels, image_size, source=scanned.path, chest_wall=image.chest_wall,
                              laterality=image.laterality)
  return [(scanned.path, features.example(
      result, image_size, label=row.label, patient_id=scanned.patient_id, laterality=scanned.laterality,
      view=scanned.view, source=scanned.path, age=row.age, abnormality=row.abnormality, subtype=row.subtype,
      subset=scanned.patient_id.split("-")[0])), audit.seen(scanned.path, image.pixels, result, image)]
