"""Writes a fake CBIS-DDSM download: scanned-film DICOMs (or the Kaggle JPEGs) + the four case CSVs.

No CBIS-DDSM pixels can be had on the build machines, so tests and benchmarks
run the builder on trees written here. They copy what the builder must cope
with in the real download (DESIGN.md, CBIS-DDSM):

- scanned-film pixels: a non-black, noisy background with scanner shading,
  bright unexposed strips along any film edge, a film label with dark text
  against every edge and corner, and a ruler along every edge, each touching
  the breast or not; the breast at the film's edge or with a margin of bare
  film; some films scanned the other way round (chest wall away from the side
  its laterality says);
- per abnormality an ROI mask (binary, full film size) and a cropped lesion
  image, in one series or two, their file names in no consistent order;
  with --realistic about a quarter of ROI series described the other way
  round (the CSV's "cropped image" is the mask) and some ROI files missing;
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
  python tools/write_cbis.py /tmp/cbis_real --patients 25 --realistic   # ~50 films, swapped / missing ROIs
  python tools/write_cbis.py /tmp/cbis_film --patients 4 --height 5000 --width 3000   # film size
"""
import argparse
import collections
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
# Film edges, the breast drawn with its chest wall on the "near" side; and the edges and corners a label goes against.
EDGES = ("top", "bottom", "far", "near")
PLACES = ("top-near", "top", "top-far", "far", "bottom-far", "bottom", "bottom-near", "near")
# A realistic tree (--realistic): this share of ROI series written the other way round, and of rows without ROI files.
SWAPPED_SHARE, ROI_MISSING_SHARE = 0.25, 0.03
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
  swapped: bool = False  # the CSV paths and descriptions call the mask the cropped image and vice versa
  roi_missing: bool = False  # the ROI files are not in the download


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
  label_at: str = "top-far"  # a PLACES entry: the film edge or corner the label is put against
  ruler_at: str = "far"  # an EDGES entry: the film edge the ruler lies along
  ruler_touches: bool = False
  strips: Tuple[str, ...] = ("top", "bottom", "far")  # EDGES with a bright unexposed strip
  margin: float = 0.0  # film between the chest-wall edge and the breast, as a share of the width

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
  breast_box: Tuple[int, int, int, int] = (0, 0, 0, 0)  # y0, x0, y1, x1 of the breast in the written pixels
  artefacts: Tuple[Tuple[int, int, int, int], ...] = ()  # boxes of the label and the ruler, written pixels
  roi_outcomes: Tuple[Tuple[str, int, str], ...] = ()  # (kind, id, what the builder must find: found, roi_swapped, ...)


def plan(num_patients: int, seed: int = 0, realistic: bool = False) -> List[Film]:
  """Films of `num_patients` patients with the real data's mix of cases.

  Patient 1 has a breast with both a mass and a calcification (a film in both
  CSVs), patient 2 is in both official sets (mass in train, calcification in
  test), patient 3 has two abnormalities on one breast; every fourth film is
  scanned the other way round. Film n's label goes against PLACES[n % 8],
  touching the breast on every other round of eight; its ruler along
  EDGES[n // 2 % 4], touching unless n % 3 == 0; its strips are the edges of
  bit mask n % 16; every third film has a margin between breast and film edge.
  `realistic`: about SWAPPED_SHARE of ROI series are written the other way
  round (the first abnormality always is) and ROI_MISSING_SHARE of rows lack
  their ROI files (the second film's always do).
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
          roll = _number(seed, patient, side, kind, number) % 1000 / 1000
          abnormalities.append(Abnormality(
              number, kind, pathology, int(rng.integers(0, 6)), int(rng.integers(1, 6)),
              str(rng.choice(shapes)), str(rng.choice(margins)), mask_apart=bool(rng.random() < 0.2),
              swapped=realistic and (roll < SWAPPED_SHARE or not films),
              roi_missing=realistic and not (roll < SWAPPED_SHARE or not films) and (
                  roll > 1 - ROI_MISSING_SHARE or index == 1)))
      for view in ("CC", "MLO"):
        n = len(films)
        films.append(Film(patient, side, view, density, tuple(abnormalities),
                          tuple((kind, official_of[kind]) for kind in sorted(set(kinds))),
                          reversed=n % 4 == 3, label_touches=n // 8 % 2 == 1, label_at=PLACES[n % 8],
                          ruler_at=EDGES[n // 2 % 4], ruler_touches=n % 3 != 0,
                          strips=tuple(edge for bit, edge in enumerate(EDGES) if n % 16 >> bit & 1),
                          margin=0.08 if n % 3 == 1 else 0.0))
  return films


def _number(*parts) -> int:
  return int(hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()[:12], 16)


def _uid(seed: int, *parts) -> str:
  return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(seed), *[str(p) for p in parts]])


class FilmTooSmallError(ValueError):
  """A film too small for its breast to show beside the artefacts drawn on it."""


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
  near_x = width * film.margin  # the chest wall's column: 0, or a margin of bare film before the breast
  radial = np.hypot((xx - near_x) / depth, (yy - centre_y) / half_height) * (
      1 + 0.025 * phantom.smooth_noise(rng, shape, height / 25))
  breast = (radial < 1.0) & (xx >= near_x)
  tissue = (0.42 + 0.2 * rng.uniform(0, 1) + 0.06 * phantom.smooth_noise(rng, shape, height / 40)
            + 0.03 * phantom.smooth_noise(rng, shape, height / 150))
  fade = np.clip(1.15 - 0.95 * radial ** 4, 0.2, 1.0)  # the skin fades as the compressed breast thins
  value = background + (tissue - background) * fade
  if film.view == "MLO":
    muscle = (xx - near_x) / (width * rng.uniform(0.18, 0.3)) + yy / (height * rng.uniform(0.3, 0.45)) < 1
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
    cx = near_x + (max(r * depth * np.cos(angle), radius_frac * height * 1.2) if place != "chest" else (
        radius_frac * height * breast_rng.uniform(1.05, 2.0)))
    radius = radius_frac * height
    lesion = np.hypot((yy - cy) / radius, (xx - cx) / (radius * rng.uniform(0.75, 1.0))) < 1.0
    if abnormality.kind == "mass":
      image = np.where(lesion, image + 0.1, image)
    else:
      dots = lesion & (rng.random(shape) < 0.02)
      image = np.where(ndimage.binary_dilation(dots, iterations=max(1, height // 800)), image + 0.25, image)
    masks.append((abnormality.kind, abnormality.number, lesion))
  hidden = np.zeros(shape, bool)  # what borders, ruler and label cover: no lesion can be outlined there
  # Bright unexposed film borders along the edges the plan names (at the chest wall the breast runs into one).
  for edge in film.strips:
    across = width if edge in ("top", "bottom") else height
    thickness = max(2, int((height if edge in ("top", "bottom") else width) * rng.uniform(0.012, 0.035)))
    # Ragged, but along the whole edge: the film outside the exposure field.
    ragged = np.maximum(thickness // 2 + 1, thickness + (2 * phantom.smooth_noise(rng, (1, across), 30)[0]).astype(int))
    if edge in ("top", "bottom"):
      strip = yy < ragged[None, :] if edge == "top" else yy >= height - ragged[None, :]
    else:
      strip = xx < ragged[:, None] if edge == "near" else xx >= width - ragged[:, None]
    image = np.where(strip, rng.uniform(0.9, 0.98), image)
    hidden |= strip
  artefacts = []
  # Ruler: a bright bar with dark ticks along one edge, at the edge or against the breast.
  along = film.ruler_at in ("top", "bottom")
  ruler_h, ruler_w = (max(2, height // 90), int(width * 0.4)) if along else (int(height * 0.3), max(2, width // 90))
  top, left = _place(breast, ruler_h, ruler_w, film.ruler_at, film.ruler_touches, rng)
  image[top:top + ruler_h, left:left + ruler_w] = 0.85
  ticks = max(2, max(height, width) // 100)
  if along:
    image[top:top + ruler_h // 2, left:left + ruler_w:ticks] = 0.3
  else:
    image[top:top + ruler_h:ticks, left:left + ruler_w // 2] = 0.3
  hidden[top:top + ruler_h, left:left + ruler_w] = True
  artefacts.append((top, left, top + ruler_h, left + ruler_w))
  # Film label: a near-white block with dark text against an edge or corner, or against the breast.
  label_h, label_w = int(height * 0.07), int(width * 0.25)
  top, left = _place(breast & ~hidden, label_h, label_w, film.label_at, film.label_touches, rng)
  image[top:top + label_h, left:left + label_w] = 0.95
  hidden[top:top + label_h, left:left + label_w] = True
  image[top + label_h // 3:top + 2 * label_h // 3, left + label_w // 8:left + 7 * label_w // 8:4] = 0.2
  artefacts.append((top, left, top + label_h, left + label_w))
  # An ROI is outlined on what the film shows: not under a border strip or the label.
  masks = [(kind, number, mask & ~hidden if (mask & ~hidden).any() else mask) for kind, number, mask in masks]
  pixels = np.rint(np.clip(image, 0, 1) * 65535).astype(np.uint16)
  visible = breast & ~hidden
  if not visible.any():
    raise FilmTooSmallError(f"a {height} x {width} film left no breast visible beside its border strips, ruler "
                            "and label: write larger films (at least about 140 x 84)")
  mirror = (film.side == "RIGHT") != film.reversed
  if mirror:
    pixels, visible = pixels[:, ::-1], visible[:, ::-1]
    masks = [(kind, number, mask[:, ::-1]) for kind, number, mask in masks]
    artefacts = [(y0, width - x1, y1, width - x0) for y0, x0, y1, x1 in artefacts]
  return np.ascontiguousarray(pixels), masks, ("right" if mirror else "left"), mask_box(visible), tuple(artefacts)


def _place(breast: np.ndarray, rect_h: int, rect_w: int, place: str, touching: bool, rng):
  """(top, left) of a rect_h x rect_w block against a film edge or corner (`place`, chest wall "near" =
  column 0), moved from there toward the breast's centre until it overlaps the breast's outline if
  `touching`; else left at the edge (it touches the breast there only where the breast fills the edge)."""
  height, width = breast.shape
  row_of = {"top": 0.0, "bottom": 1.0}
  col_of = {"near": 0.0, "far": 1.0}
  parts = place.split("-")
  row = next((row_of[p] for p in parts if p in row_of), rng.uniform(0.25, 0.75))
  col = next((col_of[p] for p in parts if p in col_of), rng.uniform(0.3, 0.7))
  start = np.array([row * (height - rect_h), col * (width - rect_w)])
  rows, cols = np.nonzero(breast)
  centre = np.array([rows.mean() - rect_h / 2, cols.mean() - rect_w / 2]) if rows.size else start
  for t in np.linspace(0, 1, 60) if touching else (0.0,):
    top, left = (int(v) for v in np.clip(start + t * (centre - start), 0, [height - rect_h, width - rect_w]))
    if breast[top:top + rect_h, left:left + rect_w].any():
      break
  return top, left


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
    pixels, masks, chest_wall, breast_box, artefacts = film_pixels(seed, film, shape)
    sources_, boxes, outcomes = [], [], []
    for kind in film.kinds:
      official = film.official_set(kind)
      folder = f"{KINDS[kind]}-{SETS[official]}_{film.patient}_{film.side}_{film.view}"
      study, series = _uid(seed, folder, "study"), _uid(seed, folder, "series")
      full_path, on_disk = writer.write(pixels, folder, film, FULL, study, series, 0)
      sources_.append(on_disk)
      for abnormality in [a for a in film.abnormalities if a.kind == kind]:
        mask = next(m for k, n, m in masks if k == kind and n == abnormality.number)
        box = mask_box(mask)
        outcome = "roi_missing" if abnormality.roi_missing else "roi_swapped" if abnormality.swapped else "found"
        boxes.append((kind, abnormality.number, (0, 0, 0, 0) if abnormality.roi_missing else box))
        outcomes.append((kind, abnormality.number, outcome))
        roi_folder = f"{folder}_{abnormality.number}"
        mask_path, crop_path = _write_roi(writer, film, abnormality, pixels, mask, roi_folder)
        rows[CSV_NAMES[(kind, official)]].append(_csv_row(film, abnormality, full_path, crop_path, mask_path))
    written.append(WrittenFilm(film, tuple(sources_), tuple(boxes), chest_wall, tuple(pixels.shape), breast_box,
                               artefacts, tuple(outcomes)))
  csv_dir = root / "csv" if layout == "kaggle" else root
  csv_dir.mkdir(parents=True, exist_ok=True)
  for (kind, _), name in CSV_NAMES.items():
    _write_case_csv(csv_dir / name, kind, rows[name])
  if layout == "kaggle":
    _write_dicom_info(csv_dir / "dicom_info.csv", writer.info_rows)
  return written


def _write_roi(writer: _Writer, film: Film, abnormality: Abnormality, pixels, mask, roi_folder: str):
  """Writes an abnormality's ROI mask and cropped image; returns the (mask, crop) paths its CSV row gives.

  In one series (their file order drawn per row) or two (`mask_apart`). A
  `swapped` row has the descriptions and the CSV paths the other way round,
  as the real CSVs sometimes do; a `roi_missing` row's files are not written.
  """
  y0, x0, y1, x1 = mask_box(mask)
  margin_y, margin_x = (y1 - y0) // 8 + 1, (x1 - x0) // 8 + 1
  crop = pixels[max(0, y0 - margin_y):y1 + margin_y, max(0, x0 - margin_x):x1 + margin_x]
  seed = writer.seed
  roi_study = _uid(seed, roi_folder, "study")
  order = _number(seed, roi_folder) % 2  # which of the two files is the mask: no fixed order
  mask_series = _uid(seed, roi_folder, "series")
  crop_series = _uid(seed, roi_folder, "crop series") if abnormality.mask_apart else mask_series
  mask_index = 0 if abnormality.mask_apart else order
  crop_index = 0 if abnormality.mask_apart else 1 - order
  if abnormality.roi_missing:
    return (f"{roi_folder}/{roi_study}/{mask_series}/{mask_index:06d}.dcm",
            f"{roi_folder}/{roi_study}/{crop_series}/{crop_index:06d}.dcm")
  said_mask, said_crop = (CROP, MASK) if abnormality.swapped else (MASK, CROP)
  # A shared series is named after the mask in the descriptive layout; each file keeps its own description.
  mask_path, _ = writer.write(mask.astype(np.uint8) * 255, roi_folder, film, said_mask, roi_study, mask_series,
                              mask_index, folder_description=said_mask if abnormality.mask_apart else MASK)
  crop_path, _ = writer.write(crop, roi_folder, film, said_crop, roi_study, crop_series, crop_index,
                              folder_description=said_crop if abnormality.mask_apart else MASK)
  return (crop_path, mask_path) if abnormality.swapped else (mask_path, crop_path)


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


def write_tree(root, num_patients: int, layout: str = "classic", seed: int = 0, shape=(300, 180),
               realistic: bool = False) -> List[WrittenFilm]:
  """Plans and writes a CBIS-DDSM tree of `num_patients` patients under `root` (the builder's manual dir).

  Args:
    root: the folder to write.
    num_patients: patients P_00001, P_00004, ... (see `plan` for the cases every tree has).
    layout: classic | descriptive (TCIA, NBIA Data Retriever) | kaggle (JPEGs + dicom_info.csv).
    seed: fixes the plan, UIDs and pixels; the same seed in another layout gives the same films.
    shape: (rows, columns) of every film; the real films are about 5000 x 3000 (FILM_SHAPE).
    realistic: about a quarter of ROI series swapped and some ROI files missing (`plan`).
  """
  return write(root, plan(num_patients, seed, realistic), layout, seed, shape)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("root", help="folder to write (the manual dir of the cbis_ddsm builder)")
  parser.add_argument("--patients", type=int, default=6)
  parser.add_argument("--layout", choices=LAYOUTS, default="classic")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--height", type=int, default=300)
  parser.add_argument("--width", type=int, default=180)
  parser.add_argument("--realistic", action="store_true",
                      help=f"write about {SWAPPED_SHARE * 100:.0f}%% of ROI series the other way round (CSV paths and "
                      f"descriptions naming the mask the cropped image) and leave {ROI_MISSING_SHARE * 100:.0f}%% of rows "
                      "without their ROI files, as in the real download")
  args = parser.parse_args(argv)
  try:
    written = write_tree(args.root, args.patients, args.layout, args.seed, (args.height, args.width),
                         args.realistic)
  except FilmTooSmallError as error:
    parser.exit(2, f"write_cbis.py: --height={args.height} --width={args.width}: {error}\n")
  outcomes = collections.Counter(outcome for w in written for _, _, outcome in w.roi_outcomes)
  print(f"wrote {len(written)} films ({sum(len(w.sources) for w in written)} full-mammogram series) "
        f"of {args.patients} patients to {args.root} ({args.layout} layout); ROI rows: "
        + ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))


if __name__ == "__main__":
  main()
