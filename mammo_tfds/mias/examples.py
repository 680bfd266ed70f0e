"""One mini-MIAS film -> its example, or the reason it is skipped.

Kept apart from the builder so worker processes and Beam workers can import it
by name (`mammo_tfds.generation`).
"""
import dataclasses
import io

import numpy as np

from mammo_tfds import audit, features, generation, imaging, sources
from mammo_tfds.mias import info
from mammo_tfds.reasons import Reason

TASKS = ("abnormal", "density")
DENSITIES = tuple(info.TISSUES.values())  # fatty, fatty-glandular, dense: F, G, D
SEVERITIES = (info.NORMAL, info.BENIGN, info.MALIGNANT)
FINDING_CLASSES = tuple(c for c in info.CLASSES if c != "NORM")
ADMITTED_BY = "a row of the label table"  # every mini-MIAS film is a 1024x1024 MLO mammogram
NORMAL_LEFT_OUT = "normal film (task: abnormal)"


@dataclasses.dataclass(frozen=True)
class FilmItem:
  """A work item: the film's table entry and its PGM file's bytes."""
  film: info.Film
  pgm: bytes


def label(film: info.Film, task: str) -> int:
  if task == "abnormal":
    return features.LABELS.index(film.severity)
  return DENSITIES.index(info.TISSUES[film.tissue])


def _findings(film: info.Film) -> dict:
  """Columns of the film's findings (source pixels, rows from the top, -1 where unknown)."""
  return {
      "class": [FINDING_CLASSES.index(f.abnormality) for f in film.findings],
      "severity": [features.LABELS.index(info.SEVERITIES[f.severity]) for f in film.findings],
      "x": np.array([f.x for f in film.findings], dtype=np.int32),
      "y": np.array([f.y for f in film.findings], dtype=np.int32),
      "radius": np.array([f.radius for f in film.findings], dtype=np.int32),
  }


def film_examples(item: FilmItem, task: str, image_size: int) -> list:
  """[(refnum, example)], or [Skip] for a film that is unreadable, not 1024x1024 or blank.

  A film of another size is skipped rather than stored: the table's
  coordinates (and its bottom-up Y) are for 1024 x 1024 films.
  """
  film, name = item.film, item.film.file_name
  try:
    pixels = sources.read_pgm(name, io.BytesIO(item.pgm))
  except sources.SourceError as error:
    return [generation.Skip(name, error.code, error.problem)]
  if pixels.shape != (info.IMAGE_SIZE, info.IMAGE_SIZE):
    return [generation.Skip(name, Reason.wrong_size, f"{pixels.shape[1]}x{pixels.shape[0]}, expected 1024x1024")]
  try:
    result = imaging.preprocess(pixels, image_size, source=name)
  except imaging.BlankImageError as error:
    return [generation.Skip(name, Reason.blank, str(error))]
  return [(film.refnum, features.example(
      result, image_size, label=label(film, task), patient_id=film.patient_id, laterality=film.laterality,
      view="MLO", source=name, tissue=DENSITIES.index(info.TISSUES[film.tissue]), severity=film.severity,
      abnormality=list(film.abnormalities), findings=_findings(film))),
          audit.seen(film.refnum, pixels, result, admitted_by=ADMITTED_BY)]
