"""Which files prediction scores, and which breast each belongs to.

- Files: `expand_paths` takes files, folders (searched recursively) and globs
  of the formats `mammo_tfds.sources` reads.
- Breasts: a DICOM image belongs to the breast (PatientID, StudyInstanceUID,
  laterality) of its tags; another file to the breast of its manifest row
  (`read_manifest`), else of its name when it follows one of NYU's patterns,
  `<exam>_<L|R>_<CC|MLO>.<ext>` (breast_cancer_classifier) or
  `<exam>_<L|R>-<CC|MLO>.<ext>` (GMIC) (patient: the folder and the exam, e.g.
  `nyu/0_L-CC.png` -> patient `nyu/0`, left) (`place`). A file the manifest
  lists is read as vouched for (`sources.read(evidence="manifest")`): the row
  is the evidence that it is a mammogram.
"""
import csv
import dataclasses
import glob
import os
import pathlib
import re
from typing import Optional, Sequence

from mammo_tfds import sources


SUPPORTED_SUFFIXES = sources.RASTER_SUFFIXES + sources.DICOM_SUFFIXES


# NYU's two naming styles: breast_cancer_classifier `<exam>_<L|R>_<CC|MLO>`, GMIC `<exam>_<L|R>-<CC|MLO>`.
NYU_NAME = re.compile(r"^(?P<exam>.+)_(?P<laterality>[LR])[-_](?P<view>CC|MLO)$")


MANIFEST_COLUMNS = ("path", "patient_id", "laterality")  # required; "view" optional


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


def place(prepared, manifest: Optional[dict] = None):
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
