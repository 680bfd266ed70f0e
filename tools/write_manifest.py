"""Writes a small collection for the manifest builder: mixed-format images + manifest.csv.

For tests and the builder's dummy_data: DICOMs (laterality and view in their
tags, not in the manifest), 16-bit PNGs, 8-bit PNGs and JPEGs of
`mammo_tfds.phantom` breasts, a patient whose image duplicates another
patient's pixels, extra columns (`age`, `site`) kept as metadata, and, on
request, bad rows: one naming a missing file, one a corrupt file.

  python tools/write_manifest.py /tmp/manifest --patients 6 --bad-rows
"""
import argparse
import csv
import dataclasses
import pathlib
import sys
from typing import List, Optional

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import generate_uid

if not __package__:  # run as `python tools/write_manifest.py`: the repo root is not on the path
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from mammo_tfds import phantom  # pylint: disable=wrong-import-position
from tools import write_cmmd  # pylint: disable=wrong-import-position

FORMATS = ("dicom", "png16", "png8", "jpeg")
SUFFIXES = {"dicom": ".dcm", "png16": ".png", "png8": ".png", "jpeg": ".jpg"}


@dataclasses.dataclass(frozen=True)
class Written:
  path: str  # relative to the root
  patient_id: str
  label: str  # benign | malignant
  laterality: str
  view: str
  file_format: str
  problem: Optional[str] = None  # "missing" / "corrupt" for the bad rows
  duplicate_of: Optional[str] = None  # the path whose pixels these are


def _save(root: pathlib.Path, relative: str, file_format: str, pixels: np.ndarray, patient: str, laterality: str,
          view: str):
  path = root / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  if file_format == "dicom":
    series = write_cmmd.Series(patient, 50, ())
    uids = {name: generate_uid(entropy_srcs=[relative, name]) for name in ("study", "series", "sop")}
    pydicom.dcmwrite(path, write_cmmd._dataset(series, laterality, view, pixels, uids),  # pylint: disable=protected-access
                     enforce_file_format=True)
  elif file_format == "png16":
    Image.fromarray(pixels.astype(np.uint16) * 257).save(path)
  elif file_format == "png8":
    Image.fromarray(pixels).save(path)
  else:
    Image.fromarray(pixels).save(path, quality=95)


def write(root, num_patients: int = 6, seed: int = 0, shape=(160, 128), bad_rows: bool = False) -> List[Written]:
  """Writes 2 images (CC, MLO of one breast) per patient, formats in turn, and manifest.csv."""
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  written, pixels_of = [], {}
  for index in range(num_patients):
    patient = f"PT{index + 1:03d}"
    malignant = bool(rng.random() < 0.5)
    laterality = str(rng.choice(["L", "R"]))
    for view in ("CC", "MLO"):
      file_format = FORMATS[len(written) % len(FORMATS)]
      relative = f"images/{patient}/{view.lower()}{SUFFIXES[file_format]}"
      duplicate_of = None
      if index == num_patients - 1 and view == "CC" and written:  # the last patient repeats the first image
        duplicate_of = written[0].path
        pixels, laterality, view_drawn = pixels_of[duplicate_of]
        malignant = written[0].label == "malignant"
      else:
        pixels = phantom.draw(rng, *shape, malignant, laterality, view)
        view_drawn = view
      pixels_of[relative] = (pixels, laterality, view_drawn)
      _save(root, relative, file_format, pixels, patient, laterality, view)
      written.append(Written(relative, patient, "malignant" if malignant else "benign", laterality, view,
                             file_format, duplicate_of=duplicate_of))
  if bad_rows:
    written.append(Written("images/missing/cc.png", "PT900", "benign", "L", "CC", "png8", problem="missing"))
    corrupt = root / "images" / "corrupt" / "mlo.png"
    corrupt.parent.mkdir(parents=True, exist_ok=True)
    corrupt.write_bytes(np.random.default_rng(1).bytes(3000))
    written.append(Written("images/corrupt/mlo.png", "PT901", "malignant", "R", "MLO", "png8", problem="corrupt"))
  with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
    out = csv.writer(handle)
    out.writerow(["path", "patient_id", "label", "laterality", "view", "age", "site"])
    for number, image in enumerate(written):
      tagged = image.file_format == "dicom"  # the DICOM tags give laterality and view
      out.writerow([image.path, image.patient_id, image.label, "" if tagged else image.laterality,
                    "" if tagged else image.view, 40 + number, "north" if number % 2 else "south"])
  return written


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="folder to write (the manual dir of the manifest builder)")
  parser.add_argument("--patients", type=int, default=6)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--height", type=int, default=160)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--bad-rows", action="store_true", help="add a row with a missing and one with a corrupt file")
  args = parser.parse_args(argv)
  written = write(args.root, args.patients, args.seed, (args.height, args.width), args.bad_rows)
  print(f"wrote {len(written)} manifest rows of {args.patients} patients to {args.root}")


if __name__ == "__main__":
  main()
