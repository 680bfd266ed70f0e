"""Writes a fake CBIS-DDSM download: scanned-film DICOMs (or the Kaggle JPEGs) + the four case CSVs.

No CBIS-DDSM pixels can be had on the build machines, so tests and benchmarks
run the builder on trees written here. They copy what the builder must cope
with in the real download (DESIGN.md, CBIS-DDSM):

- scanned-film pixels: a non-black, noisy background with scanner shading,
  bright unexposed film borders, a film label with dark text (sometimes
  touching the breast) and a ruler in the background; some films scanned the
  other way round (chest wall away from the side its laterality says);
- per abnormality an ROI mask (binary, full film size) and a cropped lesion
  image, in one series or two, their file names in no consistent order;
- headers as in the real files: Secondary Capture, Modality MG, 16 bits,
  MONOCHROME2, `Laterality` (0020,0060) but no ImageLaterality, no
  ViewPosition or View Code Sequence, PatientOrientation holding the VIEW,
  PatientID = the folder name (`Mass-Training_P_00001_LEFT_CC`, `..._CC_1`);
- the four case CSVs with the real quirks: BENIGN_WITHOUT_CALLBACK,
  `breast_density` (mass) vs `breast density` (calc), a newline inside the
  quotes of one path field, crop and mask paths ending in 000000 / 000001
  in no consistent order;
- films listed in both the mass and the calc CSVs (two full-mammogram series
  of one film, identical pixels) and patients in both official sets;
- three layouts: TCIA classic (`<PatientID>/<StudyUID>/<SeriesUID>/000000.dcm`),
  TCIA descriptive (`<PatientID>/07-20-2016-DDSM-NA-74994/1.000000-full mammogram images-24515/1-1.dcm`)
  and Kaggle (`jpeg/<SeriesUID>/1-NNN.jpg`, `csv/dicom_info.csv`, the case CSVs in `csv/`).

  python tools/write_cbis.py /tmp/cbis --patients 6 --layout classic
  python tools/write_cbis.py /tmp/cbis_film --patients 4 --height 5000 --width 3000   # film size
"""
import argparse
import csv
import dataclasses
import hashlib
import pathlib
import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from scipy import ndimage

if not __package__:  # run as `python tools/write_cbis.py`: the repo root is not on the path
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from mammo_tfds import phantom  # pylint: disable=wrong-import-position
from tools import write_cmmd  # pylint: disable=wrong-import-position

LAYOUTS = ("classic", "descriptive", "kaggle")
FILM_SHAPE = (5000, 3000)  # rows, columns: DDSM films are about 3000 x 5000 at 50 um
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
UID_PREFIX = "1.3.6.1.4.1.9590.100.1.2."
FULL, MASK, CROP = "full mammogram images", "ROI mask images", "cropped images"
KINDS = {"mass": "Mass", "calcification": "Calc"}
SETS = {"train": "Training", "test": "Test"}
CSV_NAMES = {(kind, official): f"{'mass' if kind == 'mass' else 'calc'}_case_description_{official}_set.csv"
             for kind in KINDS for official in SETS}
PATHOLOGIES = ("MALIGNANT", "BENIGN", "BENIGN_WITHOUT_CALLBACK")
PATHOLOGY_SHARES = (1457, 1429, 682)  # counted on the real CSVs
MASS_SHAPES = ("IRREGULAR", "OVAL", "LOBULATED", "ROUND", "ARCHITECTURAL_DISTORTION", "N/A")
MASS_MARGINS = ("CIRCUMSCRIBED", "ILL_DEFINED", "SPICULATED", "OBSCURED", "MICROLOBULATED", "N/A")
CALC_TYPES = ("PLEOMORPHIC", "AMORPHOUS", "PUNCTATE", "LUCENT_CENTER", "FINE_LINEAR_BRANCHING", "N/A")
CALC_DISTRIBUTIONS = ("CLUSTERED", "SEGMENTAL", "LINEAR", "REGIONAL", "N/A")
COLUMNS = {
    "mass": ("patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
             "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
             "image file path", "cropped image file path", "ROI mask file path"),
    "calcification": ("patient_id", "breast density", "left or right breast", "image view", "abnormality id",
                      "abnormality type", "calc type", "calc distribution", "assessment", "pathology", "subtlety",
                      "image file path", "cropped image file path", "ROI mask file path"),
}


@dataclasses.dataclass(frozen=True)
class Abnormality:
  """One CSV row's abnormality; the same id appears on both views of a breast."""
  number: int  # "abnormality id", 1.. per (film, kind)
  kind: str  # mass | calcification
  pathology: str
  assessment: int
  subtlety: int
  shape: str  # mass shape, or calc type
  margins: str  # mass margins, or calc distribution
  mask_apart: bool  # mask and cropped image in two series (104 of 3,568 real rows)


@dataclasses.dataclass(frozen=True)
class Film:
  """One film (patient, breast, view) and what is on it."""
  patient: str  # P_00001
  side: str  # LEFT | RIGHT
  view: str  # CC | MLO
  density: int
  abnormalities: Tuple[Abnormality, ...]
  official: Tuple[Tuple[str, str], ...]  # (kind, train|test) for each kind on the film
  reversed: bool = False  # scanned the other way round: chest wall on the side opposite its laterality
  label_touches: bool = False  # the film label touches the breast

  @property
  def kinds(self):
    return sorted({a.kind for a in self.abnormalities})

  def official_set(self, kind: str) -> str:
    return dict(self.official)[kind]


@dataclasses.dataclass(frozen=True)
class WrittenFilm:
  """What a test needs to check a build: one record per film (not per series)."""
  film: Film
  sources: Tuple[str, ...]  # full-mammogram files of the film as written, relative to the root (two if in both CSVs)
  boxes: Tuple[Tuple[str, int, Tuple[int, int, int, int]], ...]  # (kind, id, (y0, x0, y1, x1)) source pixels
  chest_wall: str  # "left" | "right": where it really is in the written pixels
  shape: Tuple[int, int]


def plan(num_patients: int, seed: int = 0) -> List[Film]:
  """Films of `num_patients` patients with the real data's mix of cases.

  Patient 1 has a breast with both a mass and a calcification (a film in both
  CSVs), patient 2 is in both official sets (mass in train, calcification in
  test), patient 3 has two abnormalities on one breast; every fourth film is
  scanned the other way round and every third has its label touching the breast.
  """
  rng = np.random.default_rng(seed)
  films = []
  for index in range(num_patients):
    patient = f"P_{index * 3 + 1:05d}"
    official_of = {kind: ("test" if rng.random() < 0.25 else "train") for kind in KINDS}
    if index == 1:
      official_of = {"mass": "train", "calcification": "test"}
    sides = ["LEFT", "RIGHT"] if rng.random() < 0.3 or index == 1 else [str(rng.choice(["LEFT", "RIGHT"]))]
    density = int(rng.integers(1, 5))
    for side_index, side in enumerate(sides):
      if index == 0:
        kinds = ["mass", "calcification"]
      elif index == 1:
        kinds = [("mass", "calcification")[side_index]]
      else:
        kinds = [str(rng.choice(list(KINDS)))]
      abnormalities = []
      for kind in kinds:
        for number in range(1, (3 if index == 2 else 2)):
          pathology = str(rng.choice(PATHOLOGIES, p=np.array(PATHOLOGY_SHARES) / sum(PATHOLOGY_SHARES)))
          shapes, margins = (MASS_SHAPES, MASS_MARGINS) if kind == "mass" else (CALC_TYPES, CALC_DISTRIBUTIONS)
          abnormalities.append(Abnormality(
              number, kind, pathology, int(rng.integers(0, 6)), int(rng.integers(1, 6)),
              str(rng.choice(shapes)), str(rng.choice(margins)), mask_apart=bool(rng.random() < 0.2)))
      for view in ("CC", "MLO"):
        films.append(Film(patient, side, view, density, tuple(abnormalities),
                          tuple((kind, official_of[kind]) for kind in sorted(set(kinds))),
                          reversed=len(films) % 4 == 3, label_touches=len(films) % 3 == 2))
  return films


def _number(*parts) -> int:
  return int(hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def _uid(seed: int, *parts) -> str:
  return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(seed), *[str(p) for p in parts]])


def film_pixels(seed: int, film: Film, shape=FILM_SHAPE):
  """(uint16 pixels, [(kind, id, bool mask)], chest wall side) of one film; a pure function of its arguments.

  Intensities are drawn on a 0..1 scale (1 = unexposed film) and stored as
  16-bit. The breast is drawn with its chest wall on the left and mirrored
  for a right breast, then mirrored again if the film was scanned reversed.
  Both views of a breast share lesion positions within the breast.
  """
  height, width = shape
  rng = np.random.default_rng([seed, _number(film.patient, film.side, film.view)])
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  # Background: grey (film base + fog), shaded, noisy; never black.
  background = rng.uniform(0.11, 0.2) + 0.012 * phantom.smooth_noise(rng, shape, height / 6)
  image = background + rng.normal(0, 0.012, size=shape).astype(np.float32)
  # Breast: half-ellipse against the chest wall (column 0), texture fading at the skin.
  depth = width * rng.uniform(0.5, 0.68)
  half_height = height * rng.uniform(0.3, 0.38)
  centre_y = height * rng.uniform(0.46, 0.54)
  radial = np.hypot(xx / depth, (yy - centre_y) / half_height) * (
      1 + 0.025 * phantom.smooth_noise(rng, shape, height / 25))
  breast = radial < 1.0
  tissue = (0.42 + 0.2 * rng.uniform(0, 1) + 0.06 * phantom.smooth_noise(rng, shape, height / 40)
            + 0.03 * phantom.smooth_noise(rng, shape, height / 150))
  fade = np.clip(1.15 - 0.75 * radial ** 3, 0.45, 1.0)
  value = background + (tissue - background) * fade
  if film.view == "MLO":
    muscle = xx / (width * rng.uniform(0.18, 0.3)) + yy / (height * rng.uniform(0.3, 0.45)) < 1
    value = np.where(muscle, value + 0.12, value)
  image = np.where(breast, value + rng.normal(0, 0.012, size=shape).astype(np.float32), image)
  masks = []
  breast_rng = np.random.default_rng([seed, _number(film.patient, film.side)])
  for abnormality in film.abnormalities:
    # Some lesions sit near the skin line or the chest wall: the crop must keep them whole.
    place = breast_rng.choice(["inner", "skin", "chest"])
    reach = {"inner": (0.2, 0.7), "skin": (0.78, 0.88), "chest": (0.1, 0.25)}[place]
    angle = breast_rng.uniform(-1.0, 1.0)
    radius_frac = breast_rng.uniform(0.02, 0.04)
    r = breast_rng.uniform(*reach)
    cy = centre_y + r * half_height * np.sin(angle)
    cx = max(r * depth * np.cos(angle), radius_frac * height * 1.2) if place != "chest" else (
        radius_frac * height * breast_rng.uniform(1.05, 2.0))
    radius = radius_frac * height
    lesion = np.hypot((yy - cy) / radius, (xx - cx) / (radius * rng.uniform(0.75, 1.0))) < 1.0
    if abnormality.kind == "mass":
      image = np.where(lesion, image + 0.1, image)
    else:
      dots = lesion & (rng.random(shape) < 0.02)
      image = np.where(ndimage.binary_dilation(dots, iterations=max(1, height // 800)), image + 0.25, image)
    masks.append((abnormality.kind, abnormality.number, lesion))
  hidden = np.zeros(shape, bool)  # what borders, ruler and label cover: no lesion can be outlined there
  # Bright unexposed film borders: along the top and bottom and the far (nipple-side) edge, and
  # sometimes a thin one at the chest wall, where the breast runs into it.
  for edge, chance in (("top", 0.75), ("bottom", 0.75), ("far", 0.75), ("near", 0.25)):
    if rng.random() < chance:
      across = width if edge in ("top", "bottom") else height
      thickness = max(2, int((height if edge in ("top", "bottom") else width) * rng.uniform(0.012, 0.035)))
      if edge == "near":
        thickness = max(2, thickness // 2)
      ragged = thickness + (2 * phantom.smooth_noise(rng, (1, across), 30)[0]).astype(int)
      level = rng.uniform(0.9, 0.98)
      if edge == "top":
        strip = yy < ragged[None, :]
      elif edge == "bottom":
        strip = yy >= height - ragged[None, :]
      elif edge == "far":
        strip = xx >= width - ragged[:, None]
      else:
        strip = xx < ragged[:, None]
      image = np.where(strip, level, image)
      hidden |= strip
  # Ruler: a bright strip with dark ticks, in the background on the far side.
  ruler_x = int(width * rng.uniform(0.8, 0.9))
  ruler_w = max(2, width // 90)
  top, length = int(height * (0.55 if film.label_touches else 0.1)), int(height * 0.3)  # apart from the label
  image[top:top + length, ruler_x:ruler_x + ruler_w] = 0.85
  hidden[top:top + length, ruler_x:ruler_x + ruler_w] = True
  image[top:top + length:max(2, height // 100), ruler_x:ruler_x + ruler_w // 2] = 0.3
  # Film label: a near-white block with dark text; sometimes touching the breast.
  label_h, label_w = int(height * 0.07), int(width * 0.25)
  if film.label_touches:
    row = int(centre_y - half_height * 0.2)
    right_edge = np.nonzero(breast[row])[0]
    left = (int(right_edge.max()) - label_w // 6) if right_edge.size else int(width * 0.5)
    top = row - label_h // 2
  else:
    top = int(height * (0.06 if rng.random() < 0.5 else 0.86))
    left = int(width * 0.7)
  left = min(max(left, 0), width - label_w)
  image[top:top + label_h, left:left + label_w] = 0.95
  hidden[top:top + label_h, left:left + label_w] = True
  image[top + label_h // 3:top + 2 * label_h // 3, left + label_w // 8:left + 7 * label_w // 8:4] = 0.2
  # An ROI is outlined on what the film shows: not under a border strip or the label.
  masks = [(kind, number, mask & ~hidden if (mask & ~hidden).any() else mask) for kind, number, mask in masks]
  pixels = np.rint(np.clip(image, 0, 1) * 65535).astype(np.uint16)
  mirror = (film.side == "RIGHT") != film.reversed
  if mirror:
    pixels = pixels[:, ::-1]
    masks = [(kind, number, mask[:, ::-1]) for kind, number, mask in masks]
  return np.ascontiguousarray(pixels), masks, ("right" if mirror else "left")


def mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
  rows, cols = np.nonzero(mask)
  return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def _dataset(values: np.ndarray, patient_folder: str, side: str, view: str, description: str, uids: dict) -> Dataset:
  ds = write_cmmd.dicom_skeleton(SECONDARY_CAPTURE, uids, patient_folder)
  ds.SeriesDescription = description
  ds.ConversionType = "WSD"
  ds.BodyPartExamined = "BREAST"
  ds.Laterality = side[0]
  ds.PatientOrientation = view  # the real files' quirk: the view, not row / column directions
  ds.Rows, ds.Columns = values.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = values.dtype.itemsize * 8
  ds.BitsStored = values.dtype.itemsize * 8
  ds.HighBit = ds.BitsStored - 1
  ds.PixelRepresentation = 0
  ds.PixelData = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
  return ds


def _to_8bit(values: np.ndarray) -> np.ndarray:
  """As the Kaggle copy's JPEGs: 16-bit scaled to 0..255 by the image's maximum."""
  if values.dtype == np.uint8:
    return values
  return np.rint(values.astype(np.float32) / max(float(values.max()), 1.0) * 255).astype(np.uint8)


@dataclasses.dataclass
class _Writer:
  """Writes files of one layout and collects dicom_info.csv rows (Kaggle) as it goes."""
  root: pathlib.Path
  layout: str
  seed: int
  info_rows: list = dataclasses.field(default_factory=list)

  def series_folder(self, patient_folder: str, study: str, series: str, description: str) -> pathlib.Path:
    if self.layout == "classic":
      return self.root / "CBIS-DDSM" / patient_folder / study / series
    if self.layout == "descriptive":
      date = f"{1 + _number(study) % 12:02d}-{1 + _number(study, 'd') % 28:02d}-2016"
      return (self.root / "CBIS-DDSM" / patient_folder / f"{date}-DDSM-NA-{_number(study) % 100000:05d}"
              / f"1.000000-{description}-{_number(series) % 100000:05d}")
    return self.root / "jpeg" / series

  def write(self, values, patient_folder, film: Film, description, study, series, index: int,
            folder_description: Optional[str] = None) -> str:
    """Writes one image; returns (the path the CSVs give for it, classic style as in the real CSVs,
    and where it was written, relative to the root)."""
    uids = {"study": study, "series": series, "sop": _uid(self.seed, series, index)}
    folder = self.series_folder(patient_folder, study, series, folder_description or description)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = f"{patient_folder}/{study}/{series}/{index:06d}.dcm"
    if self.layout == "kaggle":
      name = f"1-{1 + _number(uids['sop']) % 300}.jpg"
      while (folder / name).exists():
        name = f"1-{1 + _number(uids['sop'], name) % 300}.jpg"
      Image.fromarray(_to_8bit(values)).save(folder / name, quality=95)
      written = (folder / name).relative_to(self.root).as_posix()
      self.info_rows.append({
          "file_path": f"CBIS-DDSM/dicom/{uids['sop']}.dcm", "image_path": f"CBIS-DDSM/jpeg/{series}/{name}",
          "Laterality": film.side[0], "PatientID": patient_folder, "PatientOrientation": film.view,
          "Rows": values.shape[0], "Columns": values.shape[1], "SeriesDescription": description,
          "SeriesInstanceUID": series, "StudyInstanceUID": study, "SOPInstanceUID": uids["sop"],
          "BitsStored": values.dtype.itemsize * 8, "PhotometricInterpretation": "MONOCHROME2"})
      return csv_path, written
    name = f"{index:06d}.dcm" if self.layout == "classic" else f"1-{index + 1}.dcm"
    pydicom.dcmwrite(folder / name, _dataset(values, patient_folder, film.side, film.view, description, uids),
                     enforce_file_format=True)
    return csv_path, (folder / name).relative_to(self.root).as_posix()


def write(root, films: Sequence[Film], layout: str = "classic", seed: int = 0, shape=(300, 180)) -> List[WrittenFilm]:
  """Writes every film's series in `layout` and the four case CSVs; returns one WrittenFilm per film."""
  if layout not in LAYOUTS:
    raise ValueError(f"unknown layout {layout!r} (expected one of {LAYOUTS})")
  root = pathlib.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  writer = _Writer(root, layout, seed)
  rows = {name: [] for name in CSV_NAMES.values()}
  written = []
  for film in films:
    pixels, masks, chest_wall = film_pixels(seed, film, shape)
    sources_, boxes = [], []
    for kind in film.kinds:
      official = film.official_set(kind)
      folder = f"{KINDS[kind]}-{SETS[official]}_{film.patient}_{film.side}_{film.view}"
      study, series = _uid(seed, folder, "study"), _uid(seed, folder, "series")
      full_path, on_disk = writer.write(pixels, folder, film, FULL, study, series, 0)
      sources_.append(on_disk)
      for abnormality in [a for a in film.abnormalities if a.kind == kind]:
        mask = next(m for k, n, m in masks if k == kind and n == abnormality.number)
        box = mask_box(mask)
        boxes.append((kind, abnormality.number, box))
        y0, x0, y1, x1 = box
        margin_y, margin_x = (y1 - y0) // 8 + 1, (x1 - x0) // 8 + 1
        crop = pixels[max(0, y0 - margin_y):y1 + margin_y, max(0, x0 - margin_x):x1 + margin_x]
        roi_folder = f"{folder}_{abnormality.number}"
        roi_study = _uid(seed, roi_folder, "study")
        order = _number(seed, roi_folder) % 2  # which of the two files is the mask: no fixed order
        mask_series = _uid(seed, roi_folder, "series")
        crop_series = _uid(seed, roi_folder, "crop series") if abnormality.mask_apart else mask_series
        mask_index = 0 if abnormality.mask_apart else order
        crop_index = 0 if abnormality.mask_apart else 1 - order
        # A shared series is named after the mask in the descriptive layout; each file keeps its own description.
        mask_path, _ = writer.write(mask.astype(np.uint8) * 255, roi_folder, film, MASK, roi_study, mask_series,
                                 mask_index, folder_description=MASK)
        crop_path, _ = writer.write(crop, roi_folder, film, CROP, roi_study, crop_series, crop_index,
                                 folder_description=CROP if abnormality.mask_apart else MASK)
        rows[CSV_NAMES[(kind, official)]].append(_csv_row(film, abnormality, full_path, crop_path, mask_path))
    written.append(WrittenFilm(film, tuple(sources_), tuple(boxes), chest_wall, tuple(pixels.shape)))
  csv_dir = root / "csv" if layout == "kaggle" else root
  csv_dir.mkdir(parents=True, exist_ok=True)
  for (kind, _), name in CSV_NAMES.items():
    _write_case_csv(csv_dir / name, kind, rows[name])
  if layout == "kaggle":
    _write_dicom_info(csv_dir / "dicom_info.csv", writer.info_rows)
  return written


def _csv_row(film: Film, abnormality: Abnormality, full_path: str, crop_path: str, mask_path: str) -> list:
  """A row in the real CSVs' column order; the real quirk of a newline at the end of one quoted path."""
  if abnormality.kind == "mass":
    mask_path += "\n"
  else:
    crop_path += "\n"
  return [film.patient, film.density, film.side, film.view, abnormality.number, abnormality.kind,
          abnormality.shape, abnormality.margins, abnormality.assessment, abnormality.pathology,
          abnormality.subtlety, full_path, crop_path, mask_path]


def _write_case_csv(path: pathlib.Path, kind: str, rows: list):
  with open(path, "w", newline="", encoding="utf-8") as handle:
    writer = csv.writer(handle)
    writer.writerow(COLUMNS[kind])
    writer.writerows(rows)


def _write_dicom_info(path: pathlib.Path, rows: list):
  columns = list(rows[0]) if rows else ["image_path", "SeriesInstanceUID", "SeriesDescription"]
  with open(path, "w", newline="", encoding="utf-8") as handle:
    writer = csv.DictWriter(handle, columns)
    writer.writeheader()
    writer.writerows(rows)


def write_tree(root, num_patients: int, layout: str = "classic", seed: int = 0, shape=(300, 180)) -> List[WrittenFilm]:
  """Plans and writes a CBIS-DDSM tree of `num_patients` patients under `root` (the builder's manual dir).

  Args:
    root: the folder to write.
    num_patients: patients P_00001, P_00004, ... (see `plan` for the cases every tree has).
    layout: classic | descriptive (TCIA, NBIA Data Retriever) | kaggle (JPEGs + dicom_info.csv).
    seed: fixes the plan, UIDs and pixels; the same seed in another layout gives the same films.
    shape: (rows, columns) of every film; the real films are about 5000 x 3000 (FILM_SHAPE).
  """
  return write(root, plan(num_patients, seed), layout, seed, shape)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="folder to write (the manual dir of the cbis_ddsm builder)")
  parser.add_argument("--patients", type=int, default=6)
  parser.add_argument("--layout", choices=LAYOUTS, default="classic")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--height", type=int, default=300)
  parser.add_argument("--width", type=int, default=180)
  args = parser.parse_args(argv)
  written = write_tree(args.root, args.patients, args.layout, args.seed, (args.height, args.width))
  print(f"wrote {len(written)} films ({sum(len(w.sources) for w in written)} full-mammogram series) "
        f"of {args.patients} patients to {args.root} ({args.layout} layout)")


if __name__ == "__main__":
  main()
