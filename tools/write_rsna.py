"""Writes a fake RSNA Screening Mammography download: train.csv, test.csv and the DICOM trees.

The competition's rules forbid redistributing its files, so tests, the
builder's dummy data and benchmarks run on trees written here. They copy what
the builder must cope with in the real download (DESIGN.md, RSNA):

  root/train.csv   site_id, patient_id, image_id, laterality, view, age, cancer, biopsy,
                   invasive, BIRADS, implant, density, machine_id, difficult_negative_case
  root/test.csv    site_id, patient_id, image_id, laterality, view, age, implant, machine_id,
                   prediction_id (no labels)
  root/train_images/<patient_id>/<image_id>.dcm
  root/test_images/<patient_id>/<image_id>.dcm

- stripped headers: no Modality, no SOP Class UID in the dataset (the file
  meta says Digital X-Ray Image Storage - For Presentation), no
  BodyPartExamined, no ViewPosition or View Code Sequence; ImageLaterality
  and PatientID present; PixelPaddingValue set;
- the header variant is the machine's (`MACHINES`): MONOCHROME1 with a SIGMOID
  VOI and three windows, or MONOCHROME2 with PixelIntensityRelationship LOG,
  sign +1 and one LINEAR window (the sign contradicts the photometric
  interpretation, as on the real files); 12 or 16 bits; JPEG 2000 lossless or
  uncompressed; one machine pads its MONOCHROME1 background with
  PixelPaddingValue 0, which only a reader that honours the padding shows black;
- the two image sizes of the real set (about 2,800 x 2,100 and 5,400 x 4,900),
  times `scale` so tests write small images;
- CSV values as the real file writes them: age and BIRADS / density blank on
  many rows, cancer prevalence differing by machine (a shortcut), implants;
- on request, the rare views (AT, ML, LM, LMO), CSV rows whose file is missing,
  files with no CSV row, a file whose ImageLaterality contradicts its row, and
  a patient whose pixels copy another's.

Every image is drawn by `mammo_tfds.phantom` (bright = dense, a lesion on
cancer breasts) and written one at a time, so a full-size tree needs memory
for one image only.

  python tools/write_rsna.py /tmp/rsna --patients 40 --scale 0.05 --specials
"""
import argparse
import csv
import dataclasses
import hashlib
import pathlib
import sys
from typing import List, Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, generate_uid

if not __package__:  # run as `python tools/write_rsna.py`: the repo root is not on the path
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from mammo_tfds import phantom  # pylint: disable=wrong-import-position
from tools import write_cmmd  # pylint: disable=wrong-import-position

TRAIN_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy", "invasive",
                 "BIRADS", "implant", "density", "machine_id", "difficult_negative_case")
TEST_COLUMNS = ("site_id", "patient_id", "image_id", "laterality", "view", "age", "implant", "machine_id",
                "prediction_id")
# Digital X-Ray Image Storage - For Presentation: the file meta's SOP class; the dataset has none.
DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
SHAPES = {"small": (2800, 2100), "large": (5400, 4900)}
RARE_VIEWS = ("AT", "ML", "LM", "LMO")
DENSITIES = ("A", "B", "C", "D")


@dataclasses.dataclass(frozen=True)
class Machine:
  """One scanner: its site, the header variant it writes and its cancer prevalence (a shortcut)."""
  machine_id: int
  site_id: int
  photometric: str  # MONOCHROME1 (SIGMOID, three windows) or MONOCHROME2 (LOG, sign +1, one window)
  bits: int
  jpeg2000: bool
  shape: str  # a key of SHAPES
  cancer_share: float
  padding_zero: bool = False  # MONOCHROME1 background stored as PixelPaddingValue 0


# Prevalences far above the real ~2% so that a tree of a few dozen patients has
# cancers in every split; they differ by machine, as on the real set (a shortcut).


MACHINES = (
    Machine(49, 1, "MONOCHROME1", 12, True, "small", 0.6),
    Machine(21, 1, "MONOCHROME1", 16, False, "large", 0.35, padding_zero=True),
    Machine(170, 2, "MONOCHROME2", 12, True, "large", 0.2),
    Machine(93, 2, "MONOCHROME2", 16, False, "small", 0.45),
)


@dataclasses.dataclass(frozen=True)
class Image:
  """One CSV row and the file written for it (or not)."""
  patient_id: int
  image_id: int
  laterality: str
  view: str
  cancer: int  # the breast's label
  machine: Machine
  age: Optional[int]
  implant: int
  biopsy: int
  invasive: int
  birads: Optional[int]
  density: Optional[str]
  difficult_negative_case: bool
  has_row: bool = True  # False: a file with no CSV row
  has_file: bool = True  # False: a CSV row whose file is missing
  file_laterality: Optional[str] = None  # ImageLaterality if it contradicts the row
  pixels_from: Optional[int] = None  # a patient whose pixels this one copies

  @property
  def path(self) -> str:
    return f"train_images/{self.patient_id}/{self.image_id}.dcm"


def _number(*parts) -> int:
  return int(hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def _breast_images(rng, patient_id: int, laterality: str, cancer: int, machine: Machine, age, implant: int,
                   views=("CC", "MLO")) -> List[Image]:
  birads = None if rng.uniform() < 0.5 else (0 if cancer else int(rng.choice([1, 2])))
  density = None if rng.uniform() < 0.4 else str(rng.choice(DENSITIES))
  biopsy = 1 if cancer or rng.uniform() < 0.05 else 0
  invasive = int(cancer and rng.uniform() < 0.7)
  difficult = bool(not cancer and biopsy)
  return [Image(patient_id, int(_number(patient_id, laterality, view, i) % 2_000_000_000), laterality, view, cancer,
                machine, age, implant, biopsy, invasive, birads, density, difficult)
          for i, view in enumerate(views)]


def plan(num_patients: int, seed: int = 0) -> List[Image]:
  """CC + MLO of both breasts of each patient; cancer in at most one breast, at the machine's share."""
  rng = np.random.default_rng(seed)
  images = []
  for index in range(num_patients):
    patient_id = 10000 + int(_number(seed, index) % 60000) * 10 + index % 10
    machine = MACHINES[index % len(MACHINES)]
    age = None if rng.uniform() < 0.1 else int(rng.integers(40, 80))
    implant = int(rng.uniform() < 0.05)
    cancer_side = str(rng.choice(["L", "R"])) if rng.uniform() < machine.cancer_share else None
    for laterality in ("L", "R"):
      images += _breast_images(rng, patient_id, laterality, int(laterality == cancer_side), machine, age, implant)
  return images


def with_specials(images: List[Image], seed: int = 0) -> List[Image]:
  """Adds the rare cases the builder must count: a patient with an implant and the rare views, a row without
  its file, a file without its row, a file whose laterality contradicts its row, a pixel copy of a patient."""
  patients = list(dict.fromkeys(image.patient_id for image in images))
  if len(patients) < 5:
    raise ValueError("the special cases need at least 5 patients")
  rng = np.random.default_rng([seed, 1])
  first = [image for image in images if image.patient_id == patients[0]]
  extra = _breast_images(rng, patients[0], "L", first[0].cancer, first[0].machine, first[0].age, 1,
                         views=RARE_VIEWS)
  result = [dataclasses.replace(image, implant=1) if image.patient_id == patients[0] else image
            for image in images] + extra
  second = [i for i, image in enumerate(result) if image.patient_id == patients[1]]
  result[second[0]] = dataclasses.replace(result[second[0]], has_file=False)
  result[second[1]] = dataclasses.replace(result[second[1]], has_row=False)
  third = [i for i, image in enumerate(result) if image.patient_id == patients[2]]
  result[third[0]] = dataclasses.replace(result[third[0]], file_laterality="R" if result[third[0]].laterality == "L"
                                         else "L")
  original = {(image.laterality, image.view): image for image in result if image.patient_id == patients[3]}
  copies = [i for i, image in enumerate(result) if image.patient_id == patients[4]]
  for i in copies:
    image = result[i]
    source = original[(image.laterality, image.view)]
    result[i] = dataclasses.replace(image, pixels_from=source.patient_id, cancer=source.cancer,
                                    machine=source.machine)
  return result


def source_film(seed: int, image: Image, scale: float) -> phantom.Film:
  """The 8-bit picture of one image, bright = dense (what a correct reader returns, up to its VOI), and the
  box of its lesion.

  A pure function of its arguments, so tests can redraw what was written; a
  pixel copy draws its original's picture.
  """
  patient = image.pixels_from or image.patient_id
  height, width = (max(64, int(round(side * scale))) for side in SHAPES[image.machine.shape])
  breast_rng = np.random.default_rng([seed, patient, ord(image.laterality)])
  lesion = (breast_rng.uniform(0.3, 0.7), breast_rng.uniform(0.25, 0.6), breast_rng.uniform(0.04, 0.07))
  view_rng = np.random.default_rng([seed, patient, ord(image.laterality), _number(image.view) % 1000])
  return phantom.draw_film(view_rng, height, width, bool(image.cancer), image.laterality,
                           "CC" if image.view == "CC" else "MLO", lesion=lesion)


def source_pixels(seed: int, image: Image, scale: float) -> np.ndarray:
  """`source_film`'s pixels."""
  return source_film(seed, image, scale).pixels


def stored_values(pixels: np.ndarray, machine: Machine) -> tuple:
  """(stored values, PixelPaddingValue) as the machine writes them.

  MONOCHROME2: dense = high, the background (black) stored as 0 = the padding.
  MONOCHROME1: dense = low; the background is stored at the top (shown black),
  or, on a `padding_zero` machine, as 0 = PixelPaddingValue, which a reader
  that ignores the padding shows white.
  """
  top = (1 << machine.bits) - 1
  scaled = np.rint(pixels.astype(np.float64) * (top / 255.0)).astype(np.uint16)
  background = pixels < 8
  if machine.photometric == "MONOCHROME2":
    values = np.where(background, 0, scaled)
    return values.astype(np.uint16), 0
  values = top - scaled
  padding = 0 if machine.padding_zero else top
  return np.where(background, padding, values).astype(np.uint16), padding


def _windows(machine: Machine) -> tuple:
  """(centres, widths, function) of the machine's VOI windows, in stored values."""
  top = (1 << machine.bits) - 1
  if machine.photometric == "MONOCHROME1":
    return [0.5 * top, 0.45 * top, 0.55 * top], [0.5 * top, 0.4 * top, 0.6 * top], "SIGMOID"
  return [0.5 * top], [0.9 * top], "LINEAR"


def dicom_dataset(values: np.ndarray, padding: int, image: Image, uids: dict) -> Dataset:
  """A stripped DICOM as the competition ships it: file meta with the DX SOP class, no Modality, no
  SOP Class UID, no view; ImageLaterality, PatientID, windows, padding and the intensity relationship."""
  machine = image.machine
  ds = write_cmmd.dicom_skeleton(DX_FOR_PRESENTATION, uids, str(image.patient_id))
  del ds.SOPClassUID, ds.Modality, ds.PatientName  # stripped: only the file meta keeps the SOP class
  ds.InstanceNumber = 1
  ds.ImageLaterality = image.file_laterality or image.laterality
  ds.Rows, ds.Columns = values.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = machine.photometric
  ds.BitsAllocated = 16
  ds.BitsStored = machine.bits
  ds.HighBit = machine.bits - 1
  ds.PixelRepresentation = 0
  ds.PixelPaddingValue = padding
  ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
  centres, widths, function = _windows(machine)
  ds.WindowCenter = [round(c, 1) for c in centres] if len(centres) > 1 else round(centres[0], 1)
  ds.WindowWidth = [round(w, 1) for w in widths] if len(widths) > 1 else round(widths[0], 1)
  ds.VOILUTFunction = function
  if machine.photometric == "MONOCHROME2":
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
  ds.PixelData = np.ascontiguousarray(values).astype("<u2").tobytes()
  if machine.jpeg2000:
    ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
  return ds


def _write_image(root: pathlib.Path, seed: int, image: Image, scale: float, relative: str):
  entropy = [str(seed), str(image.patient_id), str(image.image_id)]
  uids = {"sop": generate_uid(entropy_srcs=entropy), "study": generate_uid(entropy_srcs=entropy[:2] + ["study"]),
          "series": generate_uid(entropy_srcs=entropy[:2] + [image.laterality, image.view])}
  values, padding = stored_values(source_pixels(seed, image, scale), image.machine)
  path = root / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  pydicom.dcmwrite(path, dicom_dataset(values, padding, image, uids), enforce_file_format=True)


def _blank(value) -> str:
  return "" if value is None else str(value)


def train_row(image: Image) -> list:
  machine = image.machine
  return [machine.site_id, image.patient_id, image.image_id, image.laterality, image.view, _blank(image.age),
          image.cancer, image.biopsy, image.invasive, _blank(image.birads), image.implant, _blank(image.density),
          machine.machine_id, str(image.difficult_negative_case)]


def _write_csv(path: pathlib.Path, columns, rows):
  with open(path, "w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(columns)
    writer.writerows(rows)


def write(root, images: Sequence[Image], seed: int = 0, scale: float = 0.05, test_patients: int = 1) -> list:
  """Writes train.csv and train_images/ for `images`, and a test.csv with test_images/ of `test_patients`.

  Returns the images, for tests to check the build against.
  """
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  for image in images:
    if image.has_file:
      _write_image(root, seed, image, scale, image.path)
  _write_csv(root / "train.csv", TRAIN_COLUMNS, [train_row(image) for image in images if image.has_row])
  test_images = plan(test_patients, seed + 1000)
  test_rows = []
  for image in test_images:
    _write_image(root, seed, image, scale, f"test_images/{image.patient_id}/{image.image_id}.dcm")
    test_rows.append([image.machine.site_id, image.patient_id, image.image_id, image.laterality, image.view,
                      _blank(image.age), image.implant, image.machine.machine_id,
                      f"{image.patient_id}_{image.laterality}"])
  _write_csv(root / "test.csv", TEST_COLUMNS, test_rows)
  return list(images)


def write_tree(root, num_patients: int, seed: int = 0, scale: float = 0.05, specials: bool = True,
               test_patients: int = 1) -> list:
  """Plans and writes an RSNA tree of `num_patients` training patients under `root` (see `write`)."""
  images = plan(num_patients, seed)
  return write(root, with_specials(images, seed) if specials else images, seed, scale, test_patients)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="folder to write (the manual dir of the rsna_screening builder)")
  parser.add_argument("--patients", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--scale", type=float, default=0.05,
                      help="image size as a share of the real sizes (1 = about 2,800 x 2,100 and 5,400 x 4,900)")
  parser.add_argument("--specials", action="store_true",
                      help="add rare views, an implant, a row without file, a file without row, a laterality "
                           "mismatch and a pixel copy (needs 5 patients)")
  parser.add_argument("--test-patients", type=int, default=1)
  args = parser.parse_args(argv)
  if args.patients < 1 or not 0 < args.scale <= 1:
    parser.error("--patients must be positive and --scale in (0, 1]")
  try:
    written = write_tree(args.root, args.patients, args.seed, args.scale, args.specials, args.test_patients)
  except ValueError as error:
    parser.error(str(error))
  cancers = sum(image.cancer for image in written if image.has_row)
  print(f"wrote {sum(i.has_file for i in written)} training images ({cancers} CSV rows with cancer) of "
        f"{args.patients} patients and {args.test_patients} test patients to {args.root}")


if __name__ == "__main__":
  main()
