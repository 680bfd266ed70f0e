"""RSNA Screening Mammography: train.csv rows joined to their files, split by patient, one example per image.

Kept apart from the builder module so build workers (processes, Beam) can
import the per-image function and records by name.

Join: a row names its file, `train_images/<patient_id>/<image_id>.dcm`; rows
and files are matched on (patient_id, image_id) read from the CSV and from
the two path parts, never by position or sort order. The file's own
ImageLaterality must agree with the row's (the view is in the CSV only: the
headers are stripped).

Reading: through `sources.read` and its rules of what counts as a mammogram,
with no override. The stripped files carry no Modality, no SOP Class UID in
the dataset and no body part; they are admitted by "DX for presentation +
ImageLaterality" (the file meta's Digital X-Ray For Presentation class and
their ImageLaterality), which each example's audit row shows. The CSV row is
deliberately NOT passed as evidence (`evidence=`): a file without
ImageLaterality could not be checked against its row's laterality, so such a
file is skipped as `not_mammogram` (counted, named) rather than admitted on
the row's word. Polarity follows Photometric Interpretation (MONOCHROME1
inverted once), never the contradicting PixelIntensityRelationshipSign +1 of
the MONOCHROME2 machines, and PixelPaddingValue is black background.

Labels: `cancer` is 0 / 1 per image (the same on every image of a breast);
the classes are named "no cancer" / "cancer", not benign / malignant: almost
every negative is a normal screening exam that was never biopsied, so
"benign" would claim a finding there is none of. The positive class is still
index 1, which is all the trainer relies on.

Views: CC and MLO as they are. ML, LM and LMO (the true lateral and the
reverse oblique: the breast compressed side to side, pectoral muscle in
view) go into the shared `view` feature as MLO, the family a CC / MLO model
has seen; `csv_view` keeps the CSV's own value. AT (axillary tail) images show
only the outer upper corner of the breast and the axilla: they are no whole
breast, so they are left out by design and counted.

What stops the build and what is skipped (with its `Reason` code):
  fails   - no train.csv or no train_images/ in the manual dir; a column
            missing; a value outside the known ones (file, row and value
            named); two rows for one image_id.
  skipped - a CSV row whose file is missing (`missing_images`); a file
            under train_images/ with no row (`no_label_row`); a file that
            cannot be read, decoded or admitted (the reader's own code:
            `unreadable`, `no_pixel_data`, `undecodable`, `not_mammogram`,
            ...); a blank image (`blank`); a file whose ImageLaterality
            contradicts its row (`laterality_disagrees`). Each is logged when
            it happens and counted in the summary; MAMMO_STRICT=1 makes them
            errors.
  left out by design - AT views; test_images/ (no labels): counted, rows of
            the build audit, never an error, even in strict mode.

Splits: patient-level, stratified by "any cancer", deterministic
(`splits.assign_patients`); patients whose pixel data are byte-identical are
linked into one group. The first pass hashes the stored Pixel Data bytes
without decoding them (decoding 300 GB of JPEG 2000 twice would double the
build): it finds copies of a file, not a re-encoding of the same pixels.
"""
import collections
import csv
import dataclasses
import functools
import hashlib
import io
from typing import Dict, List, NamedTuple, Optional, Tuple

from etils import epath
import pydicom

from mammo_tfds import audit, features, generation, imaging, sources, splits
from mammo_tfds.reasons import Reason

CSV_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive",
               "BIRADS", "implant", "density", "machine_id", "difficult_negative_case")
LABEL_NAMES = ("no cancer", "cancer")
# The CSV's views -> the shared `view` feature; AT is left out (module docstring).
VIEWS = {"CC": "CC", "MLO": "MLO", "ML": "MLO", "LM": "MLO", "LMO": "MLO"}
LEFT_OUT_VIEWS = ("AT",)
DENSITIES = ("A", "B", "C", "D")
MISSING = "missing"  # density not recorded (mammo_train.evaluation.subgroups.MISSING)
# The audit's reasons for files left out by design (not skips: never counted as such, never strict-mode errors).
AT_LEFT_OUT = "axillary tail view (by design)"
TEST_IMAGE_LEFT_OUT = "test_images: no labels (by design)"
SPLIT_SEED = 0
TRAIN_FOLDER, TEST_FOLDER = "train_images", "test_images"


@dataclasses.dataclass(frozen=True)
class Row:
  """One train.csv row: one image and its breast's labels."""
  patient_id: str
  image_id: str
  row: int  # as a spreadsheet shows it: the header is row 1
  site_id: str
  laterality: str
  view: str  # as the CSV says
  age: int  # -1 if blank
  cancer: int
  biopsy: int
  invasive: int
  birads: int  # -1 if blank
  implant: int
  density: str  # A-D or MISSING
  machine_id: str
  difficult_negative_case: bool

  @property
  def path(self) -> str:
    return f"{TRAIN_FOLDER}/{self.patient_id}/{self.image_id}.dcm"


class Item(NamedTuple):
  """A work item: one row, its file and the hash of its stored pixel data."""
  row: Row
  digest: str


def _number(value: str, path, where: str, column: str, allowed=None, missing: Optional[int] = None) -> int:
  text = value.strip()
  if not text and missing is not None:
    return missing
  try:
    number = float(text)
  except ValueError:
    number = float("nan")
  if not number.is_integer() or (allowed is not None and int(number) not in allowed):
    expected = f" (expected one of {', '.join(map(str, allowed))})" if allowed is not None else ""
    raise sources.SourceError(path, f"{where}: {column} {value!r} is not a valid value{expected}")
  return int(number)


def _choice(value: str, allowed, path, where: str, column: str) -> str:
  if value.strip() not in allowed:
    raise sources.SourceError(path, f"{where}: unknown {column} {value!r} (expected one of: {', '.join(allowed)})")
  return value.strip()


def _parse_row(path, number: int, record: dict) -> Row:
  where = f"row {number} (patient_id {record['patient_id']!r}, image_id {record['image_id']!r})"
  for column in ("site_id", "patient_id", "image_id", "machine_id"):
    _number(record[column], path, where, column)
  density = record["density"].strip()
  return Row(
      row=number,
      site_id=record["site_id"].strip(),
      patient_id=record["patient_id"].strip(),
      image_id=record["image_id"].strip(),
      laterality=_choice(record["laterality"], ("L", "R"), path, where, "laterality"),
      view=_choice(record["view"], tuple(VIEWS) + LEFT_OUT_VIEWS, path, where, "view"),
      age=_number(record["age"], path, where, "age", missing=-1),
      cancer=_number(record["cancer"], path, where, "cancer", (0, 1)),
      biopsy=_number(record["biopsy"], path, where, "biopsy", (0, 1)),
      invasive=_number(record["invasive"], path, where, "invasive", (0, 1)),
      birads=_number(record["BIRADS"], path, where, "BIRADS", (0, 1, 2), missing=-1),
      implant=_number(record["implant"], path, where, "implant", (0, 1)),
      density=_choice(density, DENSITIES, path, where, "density") if density else MISSING,
      machine_id=record["machine_id"].strip(),
      difficult_negative_case=_choice(record["difficult_negative_case"], ("True", "False"), path, where,
                                      "difficult_negative_case") == "True")


def read_csv(path) -> List[Row]:
  """Parses and validates train.csv: every value checked, a problem stops the build naming file, row, value."""
  path = epath.Path(path)
  lines = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
  if not lines:
    raise sources.SourceError(path, "the CSV is empty")
  header = [cell.strip() for cell in lines[0]]
  missing = [column for column in CSV_COLUMNS if column not in header]
  if missing:
    raise sources.SourceError(path, f"missing column(s) {', '.join(missing)}; columns found: {', '.join(header)}")
  index = {column: header.index(column) for column in CSV_COLUMNS}
  rows, seen = [], {}
  for number, values in enumerate(lines[1:], start=2):
    if not any(value.strip() for value in values):
      continue
    values = values + [""] * (len(header) - len(values))
    row = _parse_row(path, number, {column: values[i] for column, i in index.items()})
    if row.image_id in seen:
      raise sources.SourceError(path, f"rows {seen[row.image_id]} and {number} are both for image_id {row.image_id}")
    seen[row.image_id] = number
    rows.append(row)
  return rows


def list_images(root: epath.Path, folder: str) -> Dict[Tuple[str, str], str]:
  """(patient_id, image_id) -> relative path of every `<folder>/<patient_id>/<image_id>.dcm`."""
  found = {}
  base = root / folder
  if not base.exists():
    return found
  for patient in sorted(base.iterdir()):
    if not patient.is_dir():
      continue
    for file in sorted(patient.iterdir()):
      if file.name.lower().endswith(".dcm"):
        found[(patient.name, file.name[:-len(".dcm")])] = f"{folder}/{patient.name}/{file.name}"
  return found


@dataclasses.dataclass
class Plan:
  """What the join found: rows with files, and the rows and files that have no partner."""
  rows: List[Row]  # rows with a file, views kept
  skips: List[generation.Skip]
  left_out_views: List[Row]  # rows of AT images that have a file
  test_images: List[str]  # paths under test_images/
  csv_rows: int

  def left_out_by_design(self, split_of: Dict[str, str]) -> List[Tuple[str, str, str, dict]]:
    """(path, reason, message, audit fields) of each file left out by design: AT views, then test_images."""
    views = [(row.path, AT_LEFT_OUT, f"train.csv row {row.row}: view AT shows no whole breast",
              dict(patient_id=row.patient_id, laterality=row.laterality, view=row.view,
                   label=LABEL_NAMES[row.cancer], split=split_of.get(row.patient_id, "")))
             for row in self.left_out_views]
    return views + [(path, TEST_IMAGE_LEFT_OUT, "the competition's test set has no labels",
                     dict(patient_id=path.split("/")[1])) for path in self.test_images]


def plan(manual_dir) -> Plan:
  """Joins train.csv to train_images/ on (patient_id, image_id)."""
  root = epath.Path(manual_dir)
  csv_path = root / "train.csv"
  if not csv_path.exists():
    raise sources.SourceError(root, "no train.csv in the manual dir (see the download instructions)")
  if not (root / TRAIN_FOLDER).is_dir():
    raise sources.SourceError(root, f"no {TRAIN_FOLDER}/ folder in the manual dir (see the download instructions)")
  rows = read_csv(csv_path)
  files = list_images(root, TRAIN_FOLDER)
  kept, skips, left_out = [], [], []
  for row in rows:
    path = files.get((row.patient_id, row.image_id))
    if path is None:
      skips.append(generation.Skip(f"train.csv row {row.row}", Reason.missing_images, f"expected {row.path}"))
    elif row.view in LEFT_OUT_VIEWS:
      left_out.append(row)
    else:
      kept.append(row)
  listed = {(row.patient_id, row.image_id) for row in rows}
  skips += [generation.Skip(path, Reason.no_label_row, "no train.csv row has this patient_id and image_id")
            for key, path in sorted(files.items()) if key not in listed]
  return Plan(kept, skips, left_out, sorted(list_images(root, TEST_FOLDER).values()), len(rows))


def _pixel_digest(manual_dir: str, row: Row):
  """First pass over one file (in a worker): Item with the hash of its stored Pixel Data, or a Skip."""
  try:
    ds = pydicom.dcmread(epath.Path(manual_dir) / row.path)
  except Exception as error:  # pydicom raises several types for bad files
    return generation.Skip(row.path, Reason.unreadable, f"not a readable DICOM file ({type(error).__name__})")
  if "PixelData" not in ds:
    return generation.Skip(row.path, Reason.no_pixel_data, "no Pixel Data (7FE0,0010) element")
  return Item(row, hashlib.sha256(ds.PixelData).hexdigest())


def scan(manual_dir: str, rows: List[Row]) -> Tuple[List[Item], List[generation.Skip]]:
  """Hashes every kept file's pixel data on the build workers; unreadable files become Skips."""
  items, skips = [], []
  for outcome in generation.parallel_map(functools.partial(_pixel_digest, manual_dir), rows):
    (skips if isinstance(outcome, generation.Skip) else items).append(outcome)
  return items, skips


def duplicate_sets(items: List[Item]) -> List[List[Item]]:
  """Items whose stored pixel data are identical, each set sorted by path."""
  by_digest = collections.defaultdict(list)
  for item in items:
    by_digest[item.digest].append(item)
  return [sorted(same, key=lambda item: item.row.path) for same in by_digest.values() if len(same) > 1]


def assign_splits(items: List[Item], duplicates) -> Dict[str, str]:
  """Patient -> split, stratified by whether any image of the patient has cancer; copies kept together."""
  strata = collections.defaultdict(int)
  for item in items:
    strata[item.row.patient_id] = max(strata[item.row.patient_id], item.row.cancer)
  links = [(same[0].row.patient_id, item.row.patient_id) for same in duplicates for item in same[1:]]
  return splits.assign_patients(strata, links, seed=SPLIT_SEED)


def image_example(manual_dir: str, image_size: int, item: Item) -> list:
  """Second pass over one image (in a worker process): [(image_id, example), audit.Seen] or [Skip]."""
  row = item.row
  try:
    # Admitted by the rules, no override (module docstring): the file meta's DX For Presentation + ImageLaterality.
    image = sources.read(epath.Path(manual_dir) / row.path)
    if image.laterality is not None and image.laterality != row.laterality:
      return [generation.Skip(row.path, Reason.laterality_disagrees,
                              f"ImageLaterality {image.laterality}, train.csv row {row.row} says {row.laterality}")]
    result = imaging.preprocess(image.pixels, image_size, source=row.path, chest_wall=image.chest_wall,
                                laterality=row.laterality)
  except imaging.BlankImageError as error:
    return [generation.Skip(row.path, Reason.blank, str(error))]
  except sources.SourceError as error:
    return [generation.Skip(row.path, error.code, error.problem)]
  return [(row.image_id, features.example(
      result, image_size, label=row.cancer, patient_id=row.patient_id, laterality=row.laterality,
      view=VIEWS[row.view], source=row.path, csv_view=row.view, age=row.age, biopsy=row.biopsy,
      invasive=row.invasive, birads=row.birads, implant=row.implant, density=row.density, site_id=row.site_id,
      machine_id=row.machine_id, difficult_negative_case=row.difficult_negative_case)),
          audit.seen(row.image_id, image.pixels, result, image)]
