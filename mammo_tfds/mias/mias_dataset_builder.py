"""mini-MIAS: 322 digitised MLO films of 161 women, built from the archive as downloaded.

The manual dir holds `all-mias.tar.gz` itself (read in place, never
extracted) or its extracted files: the PGMs and `Info.txt`, or the Kaggle
copy's `Info_kaggle.txt`. Both give the same dataset, byte for byte: `source`
is the file's name inside the archive either way.

One split assignment of all 161 patients serves both configs, so a model
trained on one task and tested on the other never sees a test patient.
"""
import io
import os
import pathlib
import re
import tarfile
import zlib

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import configs, features, imaging, skips, sources, splits
from mammo_tfds.mias import info

ARCHIVE = "all-mias.tar.gz"
LABEL_TABLES = ("Info.txt", "Info_kaggle.txt")  # the first one found is used
TASKS = ("abnormal", "density")
DENSITIES = tuple(info.TISSUES.values())  # fatty, fatty-glandular, dense: F, G, D
SEVERITY_NAMES = (info.NORMAL, info.BENIGN, info.MALIGNANT)
FINDING_CLASSES = tuple(c for c in info.CLASSES if c != "NORM")
SPLIT_SEED = 0
_FILM = re.compile(r"mdb\d{3}\.pgm")


class _Archive:
  """`all-mias.tar.gz`, read in place.

  gzip cannot seek, so every read is one streamed pass over the archive
  (about a second): one for the label table and file list, one per split.
  """

  def __init__(self, path: pathlib.Path):
    self.path = path

  def _files(self, wanted):
    """(base name, bytes if wanted(name) else None) of every file; a damaged archive is an error naming it."""
    try:
      with tarfile.open(self.path, "r|gz") as tar:
        for member in tar:
          if member.isfile():
            name = os.path.basename(member.name)
            yield name, tar.extractfile(member).read() if wanted(name) else None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
      raise sources.SourceError(self.path, f"archive is damaged or truncated, download it again ({error})") from None

  def contents(self):
    """(label table name, its text, set of film file names)."""
    tables, films = {}, set()
    for name, data in self._files(lambda name: name in LABEL_TABLES):
      if data is not None:
        tables[name] = data.decode("latin-1")
      elif _FILM.fullmatch(name):
        films.add(name)
    table = next((name for name in LABEL_TABLES if name in tables), None)
    if table is None:
      raise sources.SourceError(self.path, f"no label table ({' or '.join(LABEL_TABLES)}) in the archive")
    return table, tables[table], films

  def open_films(self, names):
    """(name, open binary file) for each of `names`, in archive order."""
    for name, data in self._files(lambda name: name in names):
      if data is not None:
        yield name, io.BytesIO(data)


class _Folder:
  """The archive's files, extracted into the manual dir."""

  def __init__(self, path: pathlib.Path):
    self.path = path

  def contents(self):
    table = next(name for name in LABEL_TABLES if (self.path / name).is_file())
    text = (self.path / table).read_text(encoding="latin-1")
    films = {p.name for p in self.path.iterdir() if _FILM.fullmatch(p.name)}
    return table, text, films

  def open_films(self, names):
    for name in sorted(names):
      with open(self.path / name, "rb") as handle:
        yield name, handle


def find_source(manual_dir: pathlib.Path):
  """The archive if the manual dir has it, else the extracted files."""
  if (manual_dir / ARCHIVE).is_file():
    return _Archive(manual_dir / ARCHIVE)
  if any((manual_dir / name).is_file() for name in LABEL_TABLES):
    return _Folder(manual_dir)
  raise sources.SourceError(
      manual_dir, f"found neither {ARCHIVE} nor an extracted copy ({' or '.join(LABEL_TABLES)} and the PGMs)")


def patient_strata(films) -> dict:
  """Patient id -> (worst severity, tissue): stratifies both tasks' labels at once."""
  strata = {}
  for film in films:
    worst = max(SEVERITY_NAMES.index(film.severity), strata.get(film.patient_id, (-1,))[0])
    strata[film.patient_id] = (worst, film.tissue)
  return strata


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


class Builder(tfds.core.GeneratorBasedBuilder):
  """mini-MIAS: benign vs malignant abnormal films, or breast density of all films."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download the mini-MIAS database ({ARCHIVE}, 322 PGMs, Info.txt, Licence.txt)
  from http://peipa.essex.ac.uk/info/mias.html and put {ARCHIVE} in the manual
  dir as it is, or its extracted files (the PGMs and Info.txt, or the Kaggle
  copy's PGMs and Info_kaggle.txt) directly in the manual dir.
  """
  BUILDER_CONFIGS = [
      configs.MammoConfig(name="abnormal", task="abnormal",
                          description="The 115 films with an abnormality: benign (63) vs malignant (52)."),
      configs.MammoConfig(name="density", task="density",
                          description="All 322 films: fatty / fatty-glandular / dense tissue."),
  ]
  DEFAULT_CONFIG_NAME = "abnormal"
  builder_config_cls = configs.MammoConfig

  def _info(self) -> tfds.core.DatasetInfo:
    task, size = self.builder_config.task, self.builder_config.image_size
    if task not in TASKS:
      raise ValueError(f"mias: unknown task {task!r} in config {self.builder_config.name!r}; expected one of {TASKS}")
    finding = {
        "class": tfds.features.ClassLabel(names=list(FINDING_CLASSES)),
        "severity": tfds.features.ClassLabel(names=list(features.LABELS)),
        "x": tfds.features.Scalar(dtype=np.int32, doc="Column of the centre in source pixels; -1 if not given."),
        "y": tfds.features.Scalar(dtype=np.int32, doc="Row of the centre from the top, source pixels; -1 if not given."),
        "radius": tfds.features.Scalar(dtype=np.int32, doc="Radius of a circle enclosing it, pixels; -1 if not given."),
    }
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            **features.common(size, features.LABELS if task == "abnormal" else DENSITIES),
            "flipped": tfds.features.Scalar(dtype=np.bool_, doc="Mirrored to put the chest wall on the left."),
            "tissue": tfds.features.ClassLabel(names=list(DENSITIES)),
            "severity": tfds.features.ClassLabel(names=list(SEVERITY_NAMES)),
            "abnormality": tfds.features.Sequence(tfds.features.ClassLabel(names=list(info.CLASSES))),
            "findings": tfds.features.Sequence(finding),
        }),
        supervised_keys=("image", "label"),
        homepage="http://peipa.essex.ac.uk/info/mias.html",
    )

  def _split_generators(self, dl_manager):
    source = find_source(pathlib.Path(dl_manager.manual_dir))
    table_name, text, present = source.contents()
    table = info.parse(text, table_name)
    missing = sorted(film.file_name for film in table.values() if film.file_name not in present)
    if missing:
      raise sources.SourceError(
          missing[0], f"listed in {table_name} but not found in {dl_manager.manual_dir} "
          f"({len(missing)} missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); "
          "the download is incomplete")
    assignment = splits.assign(patient_strata(table.values()), seed=SPLIT_SEED)
    films = [f for f in table.values() if self.builder_config.task == "density" or f.findings]
    return {
        split: self._generate_examples(source, [f for f in films if assignment[f.patient_id] == split], split)
        for split in splits.SPLITS
    }

  def _generate_examples(self, source, films, split):
    """Films that cannot be read, are not 1024x1024 or are blank are skipped and counted."""
    skipped = skips.SkipLog(f"mias/{self.builder_config.name} {split}", strict=skips.strict_from_env())
    by_name = {film.file_name: film for film in films}
    kept = 0
    for name, handle in source.open_films(set(by_name)):
      film = by_name[name]
      try:
        pixels = sources.read_pgm(name, handle)
      except sources.SourceError as error:
        skipped.skip(name, "unreadable", error.problem)
        continue
      if pixels.shape != (info.IMAGE_SIZE, info.IMAGE_SIZE):
        skipped.skip(name, "not 1024x1024", f"{pixels.shape[1]}x{pixels.shape[0]}: Info.txt coordinates would not fit")
        continue
      try:
        result = imaging.preprocess(pixels, self.builder_config.image_size, source=name)
      except imaging.BlankImageError as error:
        skipped.skip(name, "blank", str(error))
        continue
      kept += 1
      yield film.refnum, {
          "image": result.image,
          "label": label(film, self.builder_config.task),
          "patient_id": film.patient_id,
          "laterality": film.laterality,
          "view": "MLO",
          "source": name,
          "crop_box": result.crop_box,
          "flipped": result.flipped,
          "tissue": DENSITIES.index(info.TISSUES[film.tissue]),
          "severity": film.severity,
          "abnormality": list(film.abnormalities),
          "findings": _findings(film),
      }
    (logging.warning if skipped.count() else logging.info)("%s", skipped.summary(kept))
