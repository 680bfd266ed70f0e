"""mini-MIAS: 322 digitised MLO films of 161 women, built from the archive as downloaded.

The manual dir holds `all-mias.tar.gz` itself (read in place, never
extracted) or its extracted files: the PGMs and `Info.txt`, or the Kaggle
copy's `Info_kaggle.txt`. Both give the same dataset, byte for byte: `source`
is the file's name inside the archive either way.

One split assignment of all 161 patients serves both configs, so a model
trained on one task and tested on the other never sees a test patient.
"""
import functools
import os
import pathlib
import re
import tarfile
import zlib

import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import builder_configs, features, generation, sources, splits
from mammo_tfds.mias import examples, info

ARCHIVE = "all-mias.tar.gz"
LABEL_TABLES = ("Info.txt", "Info_kaggle.txt")  # the first one found is used
SPLIT_SEED = 0
# Subgroups the evaluation reports, per task (schema: mammo_train/evaluation/subgroups.py;
# README "Subgroups and possible shortcuts"). No possible shortcut is declared:
# tissue density is read from the film itself. For the density task the
# tissue is the label, so its subgroups are the severities instead.
SUBGROUPS = {
    "abnormal": {"features": [{"name": "tissue"}, {"name": "laterality"}, {"name": "view"}], "shortcuts": []},
    "density": {"features": [{"name": "severity"}, {"name": "laterality"}, {"name": "view"}], "shortcuts": []},
}
_FILM = re.compile(r"mdb\d{3}\.pgm")


class _Archive:
  """`all-mias.tar.gz`, read in place.

  gzip cannot seek, and one streamed pass over the archive takes seconds, so
  it is read once and its files (338 MB) are kept in memory for the build.
  """

  def __init__(self, path: pathlib.Path):
    self.path = path
    self._files = None

  def _read(self) -> dict:
    """Base name -> bytes of every file; a damaged archive is an error naming it."""
    if self._files is None:
      try:
        with tarfile.open(self.path, "r|gz") as tar:
          self._files = {os.path.basename(m.name): tar.extractfile(m).read() for m in tar if m.isfile()}
      except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise sources.SourceError(self.path, f"archive is damaged or truncated, download it again ({error})") from None
    return self._files

  def contents(self):
    """(label table name, its text, set of film file names)."""
    files = self._read()
    table = next((name for name in LABEL_TABLES if name in files), None)
    if table is None:
      raise sources.SourceError(self.path, f"no label table ({' or '.join(LABEL_TABLES)}) in the archive")
    return table, files[table].decode("latin-1"), {name for name in files if _FILM.fullmatch(name)}

  def read(self, name: str) -> bytes:
    return self._read()[name]


class _Folder:
  """The archive's files, extracted into the manual dir."""

  def __init__(self, path: pathlib.Path):
    self.path = path

  def contents(self):
    table = next(name for name in LABEL_TABLES if (self.path / name).is_file())
    text = (self.path / table).read_text(encoding="latin-1")
    films = {p.name for p in self.path.iterdir() if _FILM.fullmatch(p.name)}
    return table, text, films

  def read(self, name: str) -> bytes:
    return (self.path / name).read_bytes()


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
    worst = max(examples.SEVERITIES.index(film.severity), strata.get(film.patient_id, (-1,))[0])
    strata[film.patient_id] = (worst, film.tissue)
  return strata


class Builder(generation.ParallelBuilder):
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
      builder_configs.MammoConfig(name="abnormal", task="abnormal",
                          description="The 115 films with an abnormality: benign (63) vs malignant (52)."),
      builder_configs.MammoConfig(name="density", task="density",
                          description="All 322 films: fatty / fatty-glandular / dense tissue."),
  ]
  DEFAULT_CONFIG_NAME = "abnormal"

  def _info(self) -> tfds.core.DatasetInfo:
    task, size = self.builder_config.task, self.builder_config.image_size
    if task not in examples.TASKS:
      raise ValueError(f"mias: unknown task {task!r} in config {self.builder_config.name!r}; "
                       f"expected one of {examples.TASKS}")
    finding = {
        "class": tfds.features.ClassLabel(names=list(examples.FINDING_CLASSES)),
        "severity": tfds.features.ClassLabel(names=list(features.LABELS)),
        "x": tfds.features.Scalar(dtype=np.int32, doc="Column of the centre in source pixels; -1 if not given."),
        "y": tfds.features.Scalar(dtype=np.int32, doc="Row of the centre from the top, source pixels; -1 if not given."),
        "radius": tfds.features.Scalar(dtype=np.int32, doc="Radius of a circle enclosing it, pixels; -1 if not given."),
    }
    return self._mammo_info({
        **features.common(size, features.LABELS if task == "abnormal" else examples.DENSITIES),
        "tissue": tfds.features.ClassLabel(names=list(examples.DENSITIES)),
        "severity": tfds.features.ClassLabel(names=list(examples.SEVERITIES)),
        "abnormality": tfds.features.Sequence(tfds.features.ClassLabel(names=list(info.CLASSES))),
        "findings": tfds.features.Sequence(finding),
    }, SUBGROUPS[task], "http://peipa.essex.ac.uk/info/mias.html")

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
    assignment = splits.assign_patients(patient_strata(table.values()), seed=SPLIT_SEED)
    films = [f for f in table.values() if self.builder_config.task == "density" or f.findings]
    for film in table.values():
      if film not in films:
        self.audit.left_out(film.file_name, examples.NORMAL_LEFT_OUT, "no abnormality in the label table",
                            patient_id=film.patient_id, laterality=film.laterality, view="MLO",
                            label=film.severity, split=assignment[film.patient_id])
    return {
        split: self._generate_examples(
            (examples.FilmItem(f, source.read(f.file_name)) for f in films if assignment[f.patient_id] == split),
            split)
        for split in splits.SPLITS
    }

  def _item_fn(self):
    return functools.partial(examples.film_examples, task=self.builder_config.task,
                             image_size=self.builder_config.image_size)
