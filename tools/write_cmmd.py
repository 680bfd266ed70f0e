"""Writes a fake CMMD download: DICOMs in TCIA's folder layout + the clinical sheet.

No real CMMD pixels can be had on the build machines, so tests and benchmarks
run the CMMD builder on trees written here. The tree copies what the builder
must cope with in the real download (mammo_tfds/cmmd/README.md):

  root/CMMD/D1-0001/07-18-2010-NA-NA-79377/1.000000-NA-70244/1-1.dcm
  root/CMMD_clinicaldata_revision.xlsx

- one series per patient: 2 images (one breast, CC + MLO) or 4 (both breasts);
- file names in the three schemes TCIA clients use (`1-1.dcm`, `1-<hash>.dcm`,
  `00000001.dcm`), in an order unrelated to laterality and view, so a reader
  that trusts names fails;
- laterality only in ImageLaterality (0020,0062), view only in View Code
  Sequence (0054,0220), no ViewPosition;
- one sheet row per labelled breast; the second breast of a 4-image series
  usually has no row;
- on request: 16-bit series (like D1-1343), MONOCHROME1 series, and patients
  whose pixels duplicate another patient's (like D1-0202 / D2-0284).

Images are written one at a time, so a full-size tree (2294 x 1914, the real
film size) needs memory for one image only.

  python tools/write_cmmd.py /tmp/cmmd --patients 20 --height 2294 --width 1914
"""
import argparse
import csv
import dataclasses
import hashlib
import pathlib
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
import openpyxl
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mammo_tfds import phantom

SHEET_NAME = "CMMD_clinicaldata_revision"
SHEET_COLUMNS = ("ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype")
REAL_SHAPE = (2294, 1914)
# Digital Mammography X-Ray Image Storage - For Presentation, as in the real files.
MAMMOGRAPHY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"
VIEW_CODES = {"CC": ("R-10242", "cranio-caudal"), "MLO": ("R-10226", "medio-lateral oblique")}
NAMINGS = ("tcia", "hash", "nbia")
# Shares measured on the real manifest and sheet: 1,026 of 1,775 patients in D1,
# 826 of 1,775 series with both breasts, 97 of those with both breasts labelled,
# 1,316 of 1,872 rows malignant, subtype given for D2 malignant breasts.
D1_SHARE = 1026 / 1775
BOTH_BREASTS_SHARE = 826 / 1775
BOTH_LABELLED_SHARE = 97 / 826
MALIGNANT_SHARE = 1316 / 1872
ABNORMALITIES = ("mass", "calcification", "both")
SUBTYPES = ("Luminal A", "Luminal B", "HER2-enriched", "triple negative")


@dataclasses.dataclass(frozen=True)
class Breast:
  laterality: str
  classification: Optional[str]  # "Benign" / "Malignant"; None: no sheet row
  abnormality: str = "mass"
  subtype: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Series:
  """One patient's series, as it will be written."""
  patient_id: str
  age: int
  breasts: Tuple[Breast, ...]
  naming: str = "tcia"
  bits_stored: int = 8
  photometric: str = "MONOCHROME2"
  pixels_from: Optional[str] = None  # draw this patient's pixels instead: a duplicate


@dataclasses.dataclass(frozen=True)
class WrittenImage:
  path: str  # relative to the root, posix
  patient_id: str
  laterality: str
  view: str
  classification: Optional[str]
  bits_stored: int
  photometric: str
  pixels_from: str  # the patient whose pixels these are (itself unless a duplicate)


def _patient_ids(num_patients: int):
  d1 = max(1, round(num_patients * D1_SHARE)) if num_patients > 1 else num_patients
  return [f"D1-{i + 1:04d}" for i in range(d1)] + [f"D2-{i + 1:04d}" for i in range(num_patients - d1)]


def _breast(rng, patient_id: str, laterality: str, labelled: bool) -> Breast:
  if not labelled:
    return Breast(laterality, None)
  malignant = rng.random() < MALIGNANT_SHARE
  subtype = str(rng.choice(SUBTYPES)) if malignant and patient_id.startswith("D2") else None
  return Breast(laterality, "Malignant" if malignant else "Benign", str(rng.choice(ABNORMALITIES)), subtype)


def plan(num_patients: int, seed: int = 0) -> list:
  """Every patient's series, with the real data's shares of each case."""
  rng = np.random.default_rng(seed)
  series = []
  for index, patient_id in enumerate(_patient_ids(num_patients)):
    age = int(rng.integers(17, 88))
    if rng.random() < BOTH_BREASTS_SHARE:
      both_labelled = rng.random() < BOTH_LABELLED_SHARE
      labelled_side = str(rng.choice(["L", "R"]))
      breasts = tuple(_breast(rng, patient_id, side, both_labelled or side == labelled_side) for side in "LR")
    else:
      breasts = (_breast(rng, patient_id, str(rng.choice(["L", "R"])), True),)
    series.append(Series(patient_id, age, breasts, naming=NAMINGS[index % len(NAMINGS)]))
  return series


def with_special_cases(series: Sequence[Series], sixteen_bit: Iterable[str] = (),
                       monochrome1: Iterable[str] = (),
                       duplicates: Iterable[Tuple[str, str]] = ()) -> list:
  """Marks series as 16-bit / MONOCHROME1, and makes `copy` duplicate `original`.

  A duplicate takes the original's breasts (sides and labels) and pixels, like
  D1-0202 and D2-0284 in the real data; edit its breasts afterwards to give it
  different labels (like D1-0808 and D1-1292).
  """
  by_id = {s.patient_id: s for s in series}
  changes = {pid: {} for pid in by_id}
  for pid in sixteen_bit:
    changes[_known(by_id, pid)]["bits_stored"] = 16
  for pid in monochrome1:
    changes[_known(by_id, pid)]["photometric"] = "MONOCHROME1"
  for original, copy in duplicates:
    changes[_known(by_id, copy)].update(breasts=by_id[_known(by_id, original)].breasts, pixels_from=original)
  return [dataclasses.replace(s, **changes[s.patient_id]) for s in series]


def _known(by_id, patient_id: str) -> str:
  if patient_id not in by_id:
    raise ValueError(f"unknown patient {patient_id!r}: the plan has {sorted(by_id)[0]} .. {sorted(by_id)[-1]}")
  return patient_id


def source_pixels(seed: int, patient_id: str, laterality: str, view: str, malignant: bool,
                  image_shape=REAL_SHAPE) -> np.ndarray:
  """The 8-bit image of one view, bright = dense: what a reader must decode.

  A pure function of its arguments, so tests can redraw what was written and
  both views of a breast share a lesion.
  """
  breast_rng = np.random.default_rng([seed, _number(patient_id), ord(laterality)])
  lesion = (breast_rng.uniform(0.3, 0.7), breast_rng.uniform(0.25, 0.6), breast_rng.uniform(0.035, 0.07))
  view_rng = np.random.default_rng([seed, _number(patient_id), ord(laterality), len(view)])
  return phantom.draw(view_rng, image_shape[0], image_shape[1], malignant, laterality, view, lesion=lesion)


def _number(patient_id: str) -> int:
  return int(hashlib.sha256(patient_id.encode()).hexdigest()[:12], 16)


def _stored_values(pixels: np.ndarray, bits_stored: int, photometric: str) -> np.ndarray:
  """The values as the file stores them: 16-bit spans the full range; MONOCHROME1 is inverted."""
  values = pixels.astype(np.uint16) * 257 if bits_stored > 8 else pixels
  top = 65535 if bits_stored > 8 else 255
  return (top - values).astype(values.dtype) if photometric == "MONOCHROME1" else values


def dicom_skeleton(sop_class: str, uids: dict, patient_id: str) -> Dataset:
  """An uncompressed MG dataset with its file meta, UIDs ("sop", "study", "series") and patient:
  what every written DICOM shares (CMMD's here, CBIS-DDSM's in write_cbis.py)."""
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = sop_class
  meta.MediaStorageSOPInstanceUID = uids["sop"]
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = sop_class
  ds.SOPInstanceUID = uids["sop"]
  ds.StudyInstanceUID = uids["study"]
  ds.SeriesInstanceUID = uids["series"]
  ds.Modality = "MG"
  ds.PatientID = patient_id
  ds.PatientName = patient_id
  return ds


def _dataset(series: Series, laterality: str, view: str, values: np.ndarray, uids: dict) -> Dataset:
  ds = dicom_skeleton(MAMMOGRAPHY_SOP_CLASS, uids, series.patient_id)
  ds.PatientSex = "F"
  ds.PatientAge = f"{series.age:03d}Y"
  ds.BodyPartExamined = "BREAST"
  ds.ImageLaterality = laterality
  code_value, meaning = VIEW_CODES[view]
  code = Dataset()
  code.CodeValue = code_value
  code.CodingSchemeDesignator = "SRT"
  code.CodeMeaning = meaning
  ds.ViewCodeSequence = [code]
  ds.Rows, ds.Columns = values.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = series.photometric
  ds.BitsAllocated = values.dtype.itemsize * 8
  ds.BitsStored = series.bits_stored
  ds.HighBit = series.bits_stored - 1
  ds.PixelRepresentation = 0
  ds.PixelData = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
  return ds


def _file_name(naming: str, index: int, sop_uid: str) -> str:
  if naming == "tcia":
    return f"1-{index}.dcm"
  if naming == "hash":
    return f"1-{hashlib.sha1(sop_uid.encode()).hexdigest()[:10]}.dcm"
  if naming == "nbia":
    return f"{index:08d}.dcm"
  raise ValueError(f"unknown naming {naming!r} (expected one of {NAMINGS})")


def _series_folder(rng, series: Series, study_uid: str, series_uid: str) -> str:
  """`CMMD/<patient>/<MM-DD-YYYY>-NA-NA-<5 digits>/1.000000-NA-<5 digits>`, as TCIA names them."""
  date = f"{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}-{int(rng.integers(2012, 2017))}"
  return f"CMMD/{series.patient_id}/{date}-NA-NA-{study_uid[-5:]}/1.000000-NA-{series_uid[-5:]}"


def _malignant_pixels(series: Series, original: Optional[Series], laterality: str) -> bool:
  """Whether the pixels of a breast show a malignant lesion: a duplicate shows the original's."""
  source = original or series
  for breast in source.breasts:
    if breast.laterality == laterality:
      return breast.classification == "Malignant"
  raise ValueError(f"{series.patient_id} {laterality}: {source.patient_id} has no such breast to copy")


def write_series(root, series: Series, seed: int = 0, image_shape=REAL_SHAPE,
                 original: Optional[Series] = None) -> list:
  """Writes one patient's series; returns its WrittenImage records.

  `original` is the series named by `series.pixels_from`, if any: its
  pixels, labels included, are what the copy shows, whatever the copy's rows say.
  """
  rng = np.random.default_rng([seed, _number(series.patient_id)])
  entropy = [str(seed), series.patient_id]
  uids = {"study": generate_uid(entropy_srcs=entropy + ["study"]),
          "series": generate_uid(entropy_srcs=entropy + ["series"])}
  folder = pathlib.Path(root) / _series_folder(rng, series, uids["study"], uids["series"])
  folder.mkdir(parents=True, exist_ok=True)
  views = [(breast, view) for breast in series.breasts for view in ("CC", "MLO")]
  written = []
  for index, order in enumerate(rng.permutation(len(views)), start=1):
    breast, view = views[order]
    uids["sop"] = generate_uid(entropy_srcs=entropy + [breast.laterality, view])
    pixels = source_pixels(seed, series.pixels_from or series.patient_id, breast.laterality, view,
                           _malignant_pixels(series, original, breast.laterality), image_shape)
    values = _stored_values(pixels, series.bits_stored, series.photometric)
    path = folder / _file_name(series.naming, index, uids["sop"])
    pydicom.dcmwrite(path, _dataset(series, breast.laterality, view, values, uids), enforce_file_format=True)
    written.append(WrittenImage(
        path.relative_to(root).as_posix(), series.patient_id, breast.laterality, view, breast.classification,
        series.bits_stored, series.photometric, series.pixels_from or series.patient_id))
  return written


def sheet_rows(series: Sequence[Series]) -> list:
  """One row per labelled breast, in the real sheet's column order."""
  return [(s.patient_id, b.laterality, s.age, 2, b.abnormality, b.classification, b.subtype)
          for s in series for b in s.breasts if b.classification is not None]


def write_sheet(root, rows: Sequence[tuple], sheet_format: str = "xlsx",
                columns: Sequence[str] = SHEET_COLUMNS) -> pathlib.Path:
  """Writes the clinical sheet as the real .xlsx (one sheet, `Sheet1`) or a CSV export of it."""
  path = pathlib.Path(root) / f"{SHEET_NAME}.{sheet_format}"
  if sheet_format == "csv":
    with open(path, "w", newline="", encoding="utf-8") as handle:
      writer = csv.writer(handle)
      writer.writerow(columns)
      writer.writerows([["" if v is None else v for v in row] for row in rows])
    return path
  if sheet_format != "xlsx":
    raise ValueError(f"unknown sheet format {sheet_format!r} (expected xlsx or csv)")
  book = openpyxl.Workbook(write_only=True)
  sheet = book.create_sheet("Sheet1")
  sheet.append(list(columns))
  for row in rows:
    sheet.append(list(row))
  book.save(path)
  return path


def write(root, series: Sequence[Series], seed: int = 0, image_shape=REAL_SHAPE,
          sheet_format: str = "xlsx") -> list:
  """Writes every series and the sheet; returns all WrittenImage records."""
  pathlib.Path(root).mkdir(parents=True, exist_ok=True)
  by_id = {s.patient_id: s for s in series}
  written = [image for s in series
             for image in write_series(root, s, seed, image_shape, by_id[s.pixels_from] if s.pixels_from else None)]
  write_sheet(root, sheet_rows(series), sheet_format)
  return written


def write_tree(root, num_patients: int, seed: int = 0, image_shape=REAL_SHAPE,
               sixteen_bit: Iterable[str] = (), monochrome1: Iterable[str] = (),
               duplicates: Iterable[Tuple[str, str]] = (), sheet_format: str = "xlsx") -> list:
  """Plans and writes a CMMD tree of `num_patients` patients under `root`.

  Args:
    root: the folder to write (the builder's manual dir).
    num_patients: patients D1-0001.. then D2-0001.., in the real D1/D2 shares.
    seed: fixes labels, layout, names and pixels.
    image_shape: (rows, cols) of every image; the real films are 2294 x 1914.
    sixteen_bit, monochrome1: patient ids whose series is written that way.
    duplicates: (original, copy) patient ids; the copy gets the original's pixels.
    sheet_format: "xlsx" (as published) or "csv" (an export of it).

  Returns:
    One WrittenImage per file, for tests to check the build against.
  """
  series = with_special_cases(plan(num_patients, seed), sixteen_bit, monochrome1, duplicates)
  return write(root, series, seed, image_shape, sheet_format)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="folder to write (the manual dir of the CMMD builder)")
  parser.add_argument("--patients", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--height", type=int, default=REAL_SHAPE[0])
  parser.add_argument("--width", type=int, default=REAL_SHAPE[1])
  parser.add_argument("--sixteen-bit", nargs="*", default=[], metavar="PATIENT")
  parser.add_argument("--monochrome1", nargs="*", default=[], metavar="PATIENT")
  parser.add_argument("--duplicate", nargs=2, action="append", default=[], metavar=("ORIGINAL", "COPY"))
  parser.add_argument("--sheet-format", choices=("xlsx", "csv"), default="xlsx")
  args = parser.parse_args(argv)
  written = write_tree(args.root, args.patients, args.seed, (args.height, args.width), args.sixteen_bit,
                       args.monochrome1, args.duplicate, args.sheet_format)
  labelled = sum(image.classification is not None for image in written)
  print(f"wrote {len(written)} images ({labelled} of labelled breasts) of {args.patients} patients to {args.root}")


if __name__ == "__main__":
  main()
