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
the series that the CSVs name as the image file are.

ROI files are decided from pixels (`roi_box`): the two files of an ROI series
are not consistently ordered and the CSV paths and descriptions follow that
order, so the CSV's "cropped image" is sometimes the mask. Each abnormality's
`roi` says what happened: found, roi_swapped (the pixels overruled the CSV
or description), roi_missing, roi_unusable (the last two: no box, the film
is kept with its label); the builder counts them in its summary line.

What stops the build and what is skipped:
  fails   - no case CSV, or a CSV value outside the known ones (file, row and
            value named); no image files; an abnormality listed twice.
  orientation - the chest wall is put on the left by `imaging.chest_wall_side`
            with the film's laterality as the hint: the pixels decide where
            their edges are decisive (films were scanned by hand, not always
            the same way round), else the DDSM convention (left breast, chest
            wall left) does. `orientation` records which; films where the
            pixels overruled the laterality are counted in the build summary.
  skipped - only a film whose full mammogram is missing (FULL_MISSING) or
            cannot be used (FULL_UNREADABLE: undecodable, a binary mask, or
            blank); a file whose header cannot be read (layouts). Each is
            logged when it happens and counted in the summary;
            MAMMO_STRICT=1 makes them errors.
"""
import collections
import dataclasses
from typing import Dict, List, Optional, Tuple

from absl import logging
from etils import epath
import numpy as np

from mammo_tfds import audit, features, generation, imaging, reasons, sources, splits
from mammo_tfds.cbis_ddsm import cases as cases_lib
from mammo_tfds.cbis_ddsm import layouts

SPLIT_SEED = 0
BOTH = "both"
# The film-level abnormality type (feature `abnormality`, a subgroup): a film with masses and calcifications is both.
ABNORMALITY_TYPES = cases_lib.KINDS + (BOTH,)
# Official-training patients -> train / validation; the official test set is our test split.
TRAIN_VALIDATION = (0.85, 0.15, 0.0)
FULL, MASK, CROP = "full mammogram images", "roi mask images", "cropped images"

# Why a film is skipped (reason codes): only its full mammogram can make it go.
FULL_MISSING = reasons.Reason.full_mammogram_missing
FULL_UNREADABLE = reasons.Reason.full_mammogram_unusable
# What became of a CSV row's ROI files (the abnormality's `roi` feature; counted in the summary line).
ROI_FOUND, ROI_SWAPPED, ROI_MISSING, ROI_UNUSABLE = "found", "roi_swapped", "roi_missing", "roi_unusable"
ROI_OUTCOMES = (ROI_FOUND, ROI_SWAPPED, ROI_MISSING, ROI_UNUSABLE)
NO_BOX = np.zeros(4, np.int32)  # the box of an abnormality whose mask is missing or unusable
# A mask (JPEG tolerance): both extremes present (>= _MASK_BRIGHT, <= _MASK_DARK) and below
# _MASK_MIDTONES of the pixels between them: the Kaggle JPEGs (quality ~95) ring a little at edges.
_MASK_BRIGHT, _MASK_DARK, _MASK_MIDTONES = 224, 31, 0.01
ADMITTED_BY = "matched by UID to a case CSV row as its image file"


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
  """FilmItems of every film whose full mammogram is there; a Skip for each film whose full mammogram is not.

  A row's ROI files may be missing: the film is still an item (`roi_box` says ROI_MISSING)."""
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
      full_files.extend(full)
      rois.append(tuple(sorted(roi.values(), key=lambda f: f.path)))
    if missing:
      skipped.append(generation.Skip(key, FULL_MISSING, "; ".join(missing)))
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
  bright, dark = pixels >= _MASK_BRIGHT, pixels <= _MASK_DARK
  midtones = (~bright & ~dark).mean()
  return bool(bright.any()) and bool(dark.any()) and midtones < _MASK_MIDTONES


def lesion_box(mask: np.ndarray) -> np.ndarray:
  """[y0, x0, y1, x1) of the mask's bright pixels, in source pixels."""
  rows, cols = np.nonzero(mask >= 128)
  return np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], dtype=np.int32)


def _is_stated_mask(image: layouts.ImageFile, case: cases_lib.Case) -> Optional[bool]:
  """Whether the CSV row and descriptions call `image` the mask: its description where it has one,
  else its series where the row's mask and crop are in two series; None where nothing says."""
  if image.description in (MASK, CROP):
    return image.description == MASK
  if case.mask_series != case.crop_series:
    return image.series_uid == case.mask_series
  return None


def roi_box(root: epath.Path, case: cases_lib.Case, files, shape):
  """(box, roi outcome, detail) of one CSV row: the ROI mask decided from pixels, whatever is said.

  The mask is the binary image (`is_mask`) of the film's size among the row's
  ROI files; anything else is the cropped image. The CSVs' paths and the
  descriptions (SeriesDescription, or dicom_info.csv's) follow the files'
  order in their series, which is not consistent, so they are only compared
  with the pixels: where they named the other file, the outcome is
  ROI_SWAPPED. A file whose header size (tags or dicom_info.csv) differs from
  the film's cannot be the mask and is not read (crops of calcifications can
  be a few pixels wide). No files: ROI_MISSING; no binary file of the film's
  size among those read (unreadable, a mask of another size, none binary):
  ROI_UNUSABLE. The box is then all zero and the film keeps its label.
  """
  if not files:
    return NO_BOX, ROI_MISSING, f"{case.where}: no file of ROI series {case.mask_series}"
  problems, masks = [], []
  for image in files:
    if image.shape and tuple(image.shape) != tuple(shape):
      continue
    try:
      pixels = read_pixels(root / image.path)
    except sources.SourceError as error:
      problems.append(f"{image.path}: {error.problem}")
      continue
    if pixels.shape != tuple(shape):
      problems.append(f"{image.path} is {pixels.shape[1]}x{pixels.shape[0]}, its film {shape[1]}x{shape[0]}")
    elif is_mask(pixels):
      masks.append((image, pixels))
  if not masks:
    problems = problems or [f"none of {', '.join(f.path for f in files)} is a binary image of the film's size"]
    return NO_BOX, ROI_UNUSABLE, f"{case.where}: " + "; ".join(problems)
  image, pixels = masks[0]
  if _is_stated_mask(image, case) is False:
    return lesion_box(pixels), ROI_SWAPPED, f"{case.where}: the mask is {image.path}, described otherwise"
  return lesion_box(pixels), ROI_FOUND, ""


def _abnormality(case: cases_lib.Case, box: np.ndarray, roi: str) -> dict:
  mass = case.kind == "mass"
  return {
      "type": case.kind, "id": case.abnormality_id, "pathology": case.pathology,
      "assessment": case.assessment, "subtlety": case.subtlety,
      "mass_shape": case.shape if mass else "", "mass_margins": case.margins if mass else "",
      "calc_type": "" if mass else case.shape, "calc_distribution": "" if mass else case.margins,
      "box": box, "roi": roi,
  }


def film_example(manual_dir: str, image_size: int, item: FilmItem) -> list:
  """One film (in a worker process): [(key, example)], or [Skip] with the reason."""
  root = epath.Path(manual_dir)
  source = item.full.path
  try:
    pixels = read_pixels(root / source)
  except sources.SourceError as error:
    return [generation.Skip(source, FULL_UNREADABLE, error.problem)]
  if is_mask(pixels):
    return [generation.Skip(source, FULL_UNREADABLE, "named as a full mammogram by its CSV row, but its pixels "
                            "are a binary mask")]
  abnormalities = []
  for case, files in zip(item.cases, item.rois):
    box, roi, detail = roi_box(root, case, files, pixels.shape)
    if detail:
      logging.warning("cbis_ddsm: %s: %s (%s)", item.key, roi, detail)
    abnormalities.append(_abnormality(case, box, roi))
  first = item.cases[0]
  try:
    result = imaging.preprocess(pixels, image_size, source=source, laterality=first.laterality)
  except imaging.BlankImageError as error:
    return [generation.Skip(source, FULL_UNREADABLE, str(error))]
  return [(item.key, features.example(
      result, image_size, label=label(item.cases), patient_id=first.patient_id, laterality=first.laterality,
      view=first.view, source=source, abnormalities=abnormalities, breast_density=first.density,
      official_split=official_split(item.cases), orientation=result.orientation,
      abnormality=abnormality_type(item.cases), subtlety=max(case.subtlety for case in item.cases))),
          audit.seen(item.key, pixels, result, admitted_by=ADMITTED_BY,
                     rois=[image.path for files in item.rois for image in files])]
