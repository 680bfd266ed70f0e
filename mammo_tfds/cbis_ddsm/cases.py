"""The four CBIS-DDSM case-description CSVs: one row per abnormality, parsed and checked.

The CSVs are the labels. Their quirks (DESIGN.md, CBIS-DDSM), all handled
here: pathology has three values and BENIGN_WITHOUT_CALLBACK is kept apart
from BENIGN; the density column is `breast_density` in the mass CSVs and
`breast density` in the calc CSVs; path fields may end in a newline inside
their quotes; the cropped-image and mask paths end in 000000 / 000001 in no
fixed order (so only their series UIDs are used). A value outside the known
ones stops the build with the file, row and value named: a misspelt
pathology would otherwise silently mislabel a film.
"""
import collections
import csv
import dataclasses
import io
import re
from typing import Dict, List, Tuple

from etils import epath

from mammo_tfds.sources import SourceError

PATHOLOGIES = ("BENIGN", "BENIGN_WITHOUT_CALLBACK", "MALIGNANT")
KINDS = ("mass", "calcification")
OFFICIAL_SPLITS = ("train", "test")
SIDES = {"LEFT": "L", "RIGHT": "R"}
VIEWS = ("CC", "MLO")
# mass_case_description_train_set.csv, calc_case_description_test_set.csv, ...
CSV_NAME = re.compile(r"(mass|calc)_case_description_(train|test)_set\.csv")
_COMMON = ("patient_id", "left or right breast", "image view", "abnormality id", "abnormality type",
           "assessment", "pathology", "subtlety", "image file path", "cropped image file path",
           "ROI mask file path")
_OWN = {"mass": ("mass shape", "mass margins"), "calcification": ("calc type", "calc distribution")}
_DENSITY = ("breast_density", "breast density")  # mass CSVs, calc CSVs


@dataclasses.dataclass(frozen=True)
class Case:
  """One abnormality on one film, as its CSV row gives it."""
  csv_name: str
  row: int  # line of the row's first field, the header being line 1
  patient_id: str  # P_00001
  laterality: str  # L | R
  view: str  # CC | MLO
  abnormality_id: int
  kind: str  # mass | calcification
  pathology: str
  assessment: int
  subtlety: int
  shape: str  # mass shape or calc type ("" where the CSV says N/A or nothing)
  margins: str  # mass margins or calc distribution
  density: int
  official_split: str  # train | test: which CSV it is in
  full_series: str  # SeriesInstanceUID of the full mammogram
  crop_series: str
  mask_series: str

  @property
  def film(self) -> Tuple[str, str, str]:
    return (self.patient_id, self.laterality, self.view)

  @property
  def where(self) -> str:
    return f"{self.csv_name} row {self.row}"


def find_csvs(root) -> Dict[str, epath.Path]:
  """Name -> path of each case CSV under `root` (any depth); two copies of one name are an error."""
  found = collections.defaultdict(list)
  for folder, _, names in epath.Path(root).walk():
    for name in names:
      if CSV_NAME.fullmatch(name):
        found[name].append(folder / name)
  twice = {name: paths for name, paths in found.items() if len(paths) > 1}
  if twice:
    name, paths = sorted(twice.items())[0]
    raise SourceError(root, f"{name} found twice ({', '.join(str(p) for p in paths)}); keep one copy")
  if not found:
    raise SourceError(root, "no case-description CSVs (mass_case_description_train_set.csv, ...) "
                      "under the manual dir: download them from the TCIA collection page")
  return {name: paths[0] for name, paths in sorted(found.items())}


def _series_uid(value: str, where: str, column: str) -> str:
  """The series UID of a CSV path `<folder>/<StudyUID>/<SeriesUID>/<file>.dcm`."""
  parts = value.strip().split("/")
  if len(parts) != 4 or not all(parts):
    raise SourceError(where, f"{column} {value.strip()!r} is not <folder>/<study UID>/<series UID>/<file>")
  return parts[2]


def _integer(value: str, where: str, column: str) -> int:
  text = value.strip()
  if not re.fullmatch(r"\d+", text):
    raise SourceError(where, f"{column} {text!r} is not a whole number")
  return int(text)


def _choice(value: str, allowed, where: str, column: str) -> str:
  text = value.strip()
  if text not in allowed:
    raise SourceError(where, f"unknown {column} {text!r} (expected one of: {', '.join(allowed)})")
  return text


def _parse_row(name: str, row: int, record: dict, kind: str, official: str, density_column: str) -> Case:
  where = f"{name} row {row}"
  own = [record[column].strip() for column in _OWN[kind]]
  stated_kind = record["abnormality type"].strip()
  if stated_kind != kind:
    raise SourceError(where, f"abnormality type {stated_kind!r} in a {kind} CSV")
  patient = record["patient_id"].strip()
  if not re.fullmatch(r"P_\d{5}", patient):
    raise SourceError(where, f"patient_id {patient!r} is not of the form P_00001")
  return Case(
      csv_name=name, row=row, patient_id=patient,
      laterality=SIDES[_choice(record["left or right breast"], tuple(SIDES), where, "left or right breast")],
      view=_choice(record["image view"], VIEWS, where, "image view"),
      abnormality_id=_integer(record["abnormality id"], where, "abnormality id"),
      kind=kind, pathology=_choice(record["pathology"], PATHOLOGIES, where, "pathology"),
      assessment=_integer(record["assessment"], where, "assessment"),
      subtlety=_integer(record["subtlety"], where, "subtlety"),
      shape="" if own[0] == "N/A" else own[0], margins="" if own[1] == "N/A" else own[1],
      density=_integer(record[density_column], where, density_column),
      official_split=official,
      full_series=_series_uid(record["image file path"], where, "image file path"),
      crop_series=_series_uid(record["cropped image file path"], where, "cropped image file path"),
      mask_series=_series_uid(record["ROI mask file path"], where, "ROI mask file path"))


def read_csv(path) -> List[Case]:
  """Parses one case CSV (its kind and official split come from its name)."""
  path = epath.Path(path)
  match = CSV_NAME.fullmatch(path.name)
  if not match:
    raise SourceError(path, "not a case-description CSV name (mass|calc)_case_description_(train|test)_set.csv")
  kind = "mass" if match.group(1) == "mass" else "calcification"
  text = path.read_text(encoding="utf-8-sig")
  reader = csv.reader(io.StringIO(text, newline=""))
  header = [column.strip() for column in next(reader, [])]
  density = next((column for column in _DENSITY if column in header), None)
  missing = [column for column in _COMMON + _OWN[kind] if column not in header] + ([] if density else ["breast density"])
  if missing:
    raise SourceError(path, f"missing column(s) {', '.join(missing)}; columns found: {', '.join(header)}")
  cases, line = [], 2
  for values in reader:
    row, line = line, line + sum(value.count("\n") for value in values) + 1  # quoted fields hold newlines
    if not any(value.strip() for value in values):
      continue
    if len(values) != len(header):
      raise SourceError(f"{path.name} row {row}", f"{len(values)} fields, the header has {len(header)}")
    cases.append(_parse_row(path.name, row, dict(zip(header, values)), kind, match.group(2), density))
  return cases


def read_cases(root) -> List[Case]:
  """Every case of every CSV under `root`; an abnormality listed twice is an error."""
  cases = [case for path in find_csvs(root).values() for case in read_csv(path)]
  seen = {}
  for case in cases:
    key = (case.kind, *case.film, case.abnormality_id)
    if key in seen:
      raise SourceError(case.where, f"abnormality {key} is also in {seen[key].where}")
    seen[key] = case
  return cases


def films(cases: List[Case]) -> Dict[Tuple[str, str, str], List[Case]]:
  """(patient, laterality, view) -> its cases from every CSV, in CSV order."""
  result = collections.defaultdict(list)
  for case in cases:
    result[case.film].append(case)
  return dict(result)
