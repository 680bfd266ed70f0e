"""Where the CBIS-DDSM image files are: an index series UID -> files, for any download layout.

Three layouts are in use, and folder names are trusted in none of them:

- TCIA, NBIA Data Retriever "classic": `<PatientID>/<StudyUID>/<SeriesUID>/000000.dcm`;
- TCIA, "descriptive": `<PatientID>/07-20-2016-DDSM-NA-74994/1.000000-full mammogram images-24515/1-1.dcm`;
- Kaggle (`cbis-ddsm-breast-cancer-image-dataset`): `jpeg/<SeriesUID>/1-NNN.jpg`
  and `csv/dicom_info.csv`, which gives each JPEG's series UID and description.

For DICOMs the series UID and description are read from each file's tags
(header only, no pixels), so the same CSV rows find the same files whatever
the folders are called.
"""
import collections
import csv
import dataclasses
import functools
import io
from typing import Dict, List

from etils import epath
import pydicom

from mammo_tfds import generation, reasons
from mammo_tfds.sources import SourceError

TCIA_CLASSIC, TCIA_DESCRIPTIVE, KAGGLE = "TCIA classic", "TCIA descriptive", "Kaggle JPEG"
DICOM_INFO = "dicom_info.csv"
_TAGS = ["SeriesInstanceUID", "SeriesDescription", "Rows", "Columns"]
# Reason codes of files the index leaves out (before any is known to be a full mammogram or an ROI file).
UNREADABLE, NOT_FOUND = reasons.Reason.unreadable, reasons.Reason.not_found


@dataclasses.dataclass(frozen=True)
class ImageFile:
  """One image file of a series: where it is and what its tags (or dicom_info.csv) say."""
  path: str  # relative to the manual dir, posix
  series_uid: str
  description: str  # SeriesDescription, lower case: full mammogram images / cropped images / ROI mask images
  shape: tuple  # (Rows, Columns) from the tags or dicom_info.csv; () if not given


@dataclasses.dataclass
class Index:
  layout: str
  series: Dict[str, List[ImageFile]]  # series UID -> its files, sorted by path
  skipped: list  # generation.Skip of files that cannot be read


def _header(root: str, path: str):
  """ImageFile from a DICOM's header, or a Skip if it cannot be read."""
  relative = epath.Path(path).relative_to(root).as_posix()
  try:
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    uid = str(ds.SeriesInstanceUID).strip()
  except Exception as error:  # pydicom raises several types for bad files
    return generation.Skip(relative, UNREADABLE, f"not a readable DICOM header ({type(error).__name__}: {error})")
  shape = (int(ds.Rows), int(ds.Columns)) if "Rows" in ds and "Columns" in ds else ()
  return ImageFile(relative, uid, str(ds.get("SeriesDescription", "") or "").strip().lower(), shape)


def _is_classic(image: ImageFile) -> bool:
  return epath.Path(image.path).parent.name == image.series_uid


def _tcia(root: epath.Path, dicoms: list) -> Index:
  series, skipped = collections.defaultdict(list), []
  for outcome in generation.parallel_map(functools.partial(_header, str(root)), [str(p) for p in dicoms]):
    if isinstance(outcome, generation.Skip):
      skipped.append(outcome)
    else:
      series[outcome.series_uid].append(outcome)
  images = [image for files in series.values() for image in files]
  classic = sum(_is_classic(image) for image in images)
  layout = TCIA_CLASSIC if classic * 2 >= len(images) else TCIA_DESCRIPTIVE
  return Index(layout, {uid: sorted(files, key=lambda f: f.path) for uid, files in series.items()}, skipped)


def _kaggle(root: epath.Path, info: epath.Path) -> Index:
  """The JPEGs that dicom_info.csv lists; its image_path (`CBIS-DDSM/jpeg/<UID>/1-1.jpg`) is read from `jpeg/` on."""
  base = info.parent.parent  # the folder holding csv/ and jpeg/
  series, skipped = collections.defaultdict(list), []
  reader = csv.DictReader(io.StringIO(info.read_text(encoding="utf-8-sig"), newline=""))
  missing = [c for c in ("image_path", "SeriesInstanceUID", "SeriesDescription") if c not in (reader.fieldnames or [])]
  if missing:
    raise SourceError(info, f"missing column(s) {', '.join(missing)}")
  for line, record in enumerate(reader, start=2):
    parts = record["image_path"].strip().split("/")
    if "jpeg" not in parts:
      raise SourceError(info, f"row {line}: image_path {record['image_path']!r} has no jpeg/ folder")
    path = base.joinpath(*parts[parts.index("jpeg"):])
    relative = path.relative_to(root).as_posix()
    if not path.exists():
      skipped.append(generation.Skip(relative, NOT_FOUND, f"listed in {info.name} row {line} but not found"))
      continue
    rows, columns = (record.get("Rows") or "").strip(), (record.get("Columns") or "").strip()
    shape = (int(float(rows)), int(float(columns))) if rows and columns else ()
    series[record["SeriesInstanceUID"].strip()].append(
        ImageFile(relative, record["SeriesInstanceUID"].strip(), (record["SeriesDescription"] or "").strip().lower(),
                  shape))
  return Index(KAGGLE, {uid: sorted(files, key=lambda f: f.path) for uid, files in series.items()}, skipped)


def find(manual_dir) -> Index:
  """Indexes the image files of the download in `manual_dir`: the Kaggle copy if dicom_info.csv is there."""
  root = epath.Path(manual_dir)
  dicoms, infos = [], []
  for folder, _, names in root.walk():
    for name in names:
      if name.lower().endswith(".dcm"):
        dicoms.append(folder / name)
      elif name == DICOM_INFO:
        infos.append(folder / name)
  if len(infos) > 1:
    raise SourceError(root, f"{DICOM_INFO} found {len(infos)} times; keep one Kaggle copy in the manual dir")
  if infos:
    return _kaggle(root, infos[0])
  if not dicoms:
    raise SourceError(root, f"no .dcm files (TCIA download) and no csv/{DICOM_INFO} (Kaggle copy) under the manual dir")
  return _tcia(root, sorted(dicoms))

