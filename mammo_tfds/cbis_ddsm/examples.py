"""CBIS-DDSM: films joined to their CSV rows and files, split by patient, one example per film.

Kept apart from the builder module so build workers (processes, Beam) can
import the per-film function and records by name.

One example per full-field mammogram, i.e. per film (patient, breast, view).
71 real films are listed in both the mass and the calc CSVs and so have two
full-mammogram series; they are one example, made from the first series by
path, with the abnormalities of both (each mask must fit that image). The
label is malignant if any abnormality on the film is MALIGNANT, else benign
(BENIGN and BENIGN_WITHOUT_CALLBACK; the pathology of each abnormality is
kept as it is). ROI masks and cropped lesion images are never examples: only
the series that the CSVs name as the image file are, and a file there must
be described as a full mammogram (or not described) and not be a binary mask.

What stops the build and what is skipped:
  fails   - no case CSV, or a CSV value outside the known ones (file, row and
            value named); no image files; an abnormality listed twice.
  orientation - the chest wall is put on the left by `imaging.chest_wall_side`
            with the film's laterality as the hint: the pixels decide where
            their edges are decisive (films were scanned by hand, not always
            the same way round), else the DDSM convention (left breast, chest
            wall left) does. `orientation` records which; films where the
            pixels overruled the laterality are counted in the build summary.
  skipped - a film with a CSV row whose files are missing; a file that cannot
            be read; a mask whose size differs from its film's; an ROI series
            with no mask, or whose descriptions contradict the contents; a
            blank image. The whole film is skipped, since dropping one row
            could turn a malignant film benign. Each is logged when it
            happens and counted in the summary; MAMMO_STRICT=1 makes them errors.
"""
import collections
import dataclasses
from typing import Dict, List, Tuple

from etils import epath
import numpy as np

from mammo_tfds import audit, features, generation, imaging, sources, splits
from mammo_tfds.cbis_ddsm import cases as cases_lib
from mammo_tfds.cbis_ddsm import layouts

SPLIT_SEED = 0
BOTH = "both"
# The film-level abnormality type (feature `abnormality`, a subgroup): a film with masses and calcifications is both.
ABNORMALITY_TYPES = cases_lib.KINDS + (BOTH,)
# Official-training patients -> train / validation; the official test set is our test split.
TRAIN_VALIDATION = (0.85, 0.15, 0.0)
FULL, MASK, CROP = "full mammogram images", "roi mask images", "cropped images"

MISSING = "CSV row missing files"
UNREADABLE = layouts.UNREADABLE
SIZE_MISMATCH = "mask size mismatch"
NO_MASK = "no ROI mask"
CONTRADICTS = "description contradicts pixels"
NOT_FULL = "not a full mammogram"
BLANK = "blank image"
ADMITTED_BY = "matched by UID to a case CSV row as its image file"
# A mask: below this share of pixels between the two extremes (JPEG copies ring a little at edges).
_MASK_MIDTONES = 0.01


@dataclasses.dataclass(frozen=True)
class FilmItem:
  """A work item: one film, its CSV rows, the file it is made from and each row's ROI files."""
  key: str  # P_00001_LEFT_CC
  cases: Tuple[cases_lib.Case, ...]
  full: layouts.ImageFile
  rois: Tuple[Tuple[layouts.ImageFile, ...], ...]  # per case: the files of its mask and crop series
  series_count: int  # full-mammogram series of the film (2 if it is in both the mass and calc CSVs)


def film_key(film) -> str:
  patient, laterality, view = film
  return f"{patient}_{'LEFT' if laterality == 'L' else 'RIGHT'}_{view}"


def plan(all_cases: List[cases_lib.Case], index: layouts.Index) -> Tuple[List[FilmItem], List[generation.Skip]]:
  """FilmItems of every film whose files are all there; a Skip for each film with a row that lacks files."""
  items, skipped = [], []
  for film, film_cases in sorted(cases_lib.films(all_cases).items()):
    key = film_key(film)
    missing = []
    full_files, rois = [], []
    for case in film_cases:
      full = [f for f in index.series.get(case.full_series, []) if f.description in (FULL, "")]
      roi = {f.path: f for uid in (case.mask_series, case.crop_series) for f in index.series.get(uid, [])}
      if not index.series.get(case.full_series):
        missing.append(f"{case.where}: no file of full-mammogram series {case.full_series}")
      elif len(full) != 1:
        missing.append(f"{case.where}: series {case.full_series} has {len(full)} files described as full mammograms")
      if not roi:
        missing.append(f"{case.where}: no file of ROI series {case.mask_series}")
      full_files.extend(full)
      rois.append(tuple(sorted(roi.values(), key=lambda f: f.path)))
    if missing:
      skipped.append(generation.Skip(key, MISSING, "; ".join(missing)))
      continue
    distinct = sorted({f.path: f for f in full_files}.values(), key=lambda f: f.path)
    items.append(FilmItem(key, tuple(film_cases), distinct[0], tuple(rois), len(distinct)))
  return items, skipped


def label(film_cases) -> int:
  """Malignant if any abnormality on the film is."""
  return features.LABELS.index("malignant" if any(c.pathology == "MALIGNANT" for c in film_cases) else "benign")


def abnormality_type(film_cases) -> str:
  """The film's abnormalities as one value (a subgroup needs one per image): mass, calcification or both."""
  kinds = {case.kind for case in film_cases}
  return kinds.pop() if len(kinds) == 1 else BOTH


def official_split(film_cases) -> str:
  return "test" if any(c.official_split == "test" for c in film_cases) else "train"


def patients_in_both(all_cases) -> List[str]:
  """Patients with rows in both official sets (31 in the real CSVs)."""
  sets = collections.defaultdict(set)
  for case in all_cases:
    sets[case.patient_id].add(case.official_split)
  return sorted(p for p, s in sets.items() if len(s) == 2)


def assign_splits(all_cases) -> Dict[str, str]:
  """Patient -> split: a patient with any official-test row is in test (the 31 in both sets too), so no
  patient straddles; the official-training patients go to train / validation by patient, stratified by
  whether any of their films is malignant."""
  test = {c.patient_id for c in all_cases if c.official_split == "test"}
  strata = collections.defaultdict(int)
  for case in all_cases:
    if case.patient_id not in test:
      strata[case.patient_id] = max(strata[case.patient_id], int(case.pathology == "MALIGNANT"))
  result = splits.assign_patients(strata, seed=SPLIT_SEED, fractions=TRAIN_VALIDATION)
  result.update({patient: "test" for patient in test})
  return result


def read_pixels(path) -> np.ndarray:
  """8-bit pixels (bright = dense) of a CBIS-DDSM DICOM or a Kaggle JPEG, through `sources.read`.

  Laterality and view are not taken from the file: the DICOMs have no view
  tags (PatientOrientation holds the view, and `sources` refuses it as
  directions) and the JPEGs no tags at all, so they come from the CSV rows
  the file was matched to by UID.
  """
  return sources.read(str(path)).pixels


def is_mask(pixels: np.ndarray) -> bool:
  """Binary content: (almost) every pixel at one of the two extremes, and both extremes there
  (a small cropped image of dense tissue can be uniformly bright)."""
  bright, dark = pixels >= 224, pixels <= 31
  midtones = (~bright & ~dark).mean()
  return bool(bright.any()) and bool(dark.any()) and midtones < _MASK_MIDTONES


def lesion_box(mask: np.ndarray) -> np.ndarray:
  """[y0, x0, y1, x1) of the mask's bright pixels, in source pixels."""
  rows, cols = np.nonzero(mask >= 128)
  return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], dtype=np.int32)


def _find_mask(root: epath.Path, files, shape, where: str):
  """(mask pixels, None) or (None, Skip): the ROI mask among a row's ROI files.

  Told apart by description AND content. A file whose header size (tags or
  dicom_info.csv) differs from the film's cannot be its mask: if it says it
  is one, that is a size mismatch; otherwise it is the cropped image and is
  not read (crops of calcifications can be a few pixels wide). Files of the
  film's size are read: a mask must be binary and not described as a
  cropped image, and a file described as a mask must be binary.
  """
  masks = []
  for image in files:
    if image.shape and tuple(image.shape) != tuple(shape):
      if image.description == MASK:
        return None, generation.Skip(image.path, SIZE_MISMATCH, f"{where}: mask is {image.shape[1]}x"
                                     f"{image.shape[0]}, its film {shape[1]}x{shape[0]}")
      continue
    try:
      pixels = read_pixels(root / image.path)
    except sources.SourceError as error:
      return None, generation.Skip(image.path, UNREADABLE, error.problem)
    binary = is_mask(pixels)
    if image.description and (image.description == MASK) != binary:
      return None, generation.Skip(image.path, CONTRADICTS, f"{where}: described as {image.description!r} but the "
                                   f"pixels are {'a binary mask' if binary else 'not a binary mask'}")
    if binary:
      masks.append((image, pixels))
  if not masks:
    return None, generation.Skip(where, NO_MASK, f"none of {', '.join(f.path for f in files)} is a binary mask "
                                 "of the film's size")
  fitting = [pixels for _, pixels in masks if pixels.shape == shape]
  if not fitting:
    image, pixels = masks[0]
    return None, generation.Skip(image.path, SIZE_MISMATCH, f"{where}: mask is {pixels.shape[1]}x{pixels.shape[0]}, "
                                 f"its film {shape[1]}x{shape[0]}")
  return fitting[0], None


def _abnormality(case: cases_lib.Case, box: np.ndarray) -> dict:
  mass = case.kind == "mass"
  return {
      "type": case.kind, "id": case.abnormality_id, "pathology": case.pathology,
      "assessment": case.assessment, "subtlety": case.subtlety,
      "mass_shape": case.shape if mass else "", "mass_margins": case.margins if mass else "",
      "calc_type": "" if mass else case.shape, "calc_distribution": "" if mass else case.margins,
      "box": box,
  }


def film_example(manual_dir: str, image_size: int, item: FilmItem) -> list:
  """One film (in a worker process): [(key, example)], or [Skip] with the reason."""
  root = epath.Path(manual_dir)
  source = item.full.path
  try:
    pixels = read_pixels(root / source)
  except sources.SourceError as error:
    return [generation.Skip(source, UNREADABLE, error.problem)]
  if is_mask(pixels):
    return [generation.Skip(source, NOT_FULL, "named as a full mammogram by its CSV row, but its pixels are a mask")]
  abnormalities = []
  for case, files in zip(item.cases, item.rois):
    mask, skip = _find_mask(root, files, pixels.shape, case.where)
    if skip:
      return [skip]
    abnormalities.append(_abnormality(case, lesion_box(mask)))
  first = item.cases[0]
  try:
    result = imaging.preprocess(pixels, image_size, source=source, laterality=first.laterality)
  except imaging.BlankImageError as error:
    return [generation.Skip(source, BLANK, str(error))]
  return [(item.key, features.example(
      result, image_size, label=label(item.cases), patient_id=first.patient_id, laterality=first.laterality,
      view=first.view, source=source, abnormalities=abnormalities, breast_density=first.density,
      official_split=official_split(item.cases), orientation=result.orientation,
      abnormality=abnormality_type(item.cases), subtlety=max(case.subtlety for case in item.cases))),
          audit.seen(item.key, pixels, result, admitted_by=ADMITTED_BY,
                     rois=[image.path for files in item.rois for image in files])]
