"""mini-MIAS: the label table parser and the builder, on the real files and on broken ones.

The real archive is read from the shared data folder (skipped when absent);
broken inputs start from the made-up archive in mammo_tfds/mias/dummy_data
(tools/write_fake_mias.py), extracted into a temporary folder.
"""
import collections
import io
import pathlib
import tarfile

import pytest
import tensorflow_datasets as tfds

from mammo_tfds import builder_configs, imaging, sources
from mammo_tfds.mias import info, mias_dataset_builder

DUMMY_ARCHIVE = pathlib.Path(mias_dataset_builder.__file__).parent / "dummy_data" / "all-mias.tar.gz"


@pytest.fixture(scope="module")
def real_archive(shared_data) -> pathlib.Path:
  path = shared_data / "mias" / "all-mias.tar.gz"
  if not path.is_file():
    pytest.skip(f"{path} not found")
  return path


@pytest.fixture(scope="module")
def real_info_text(real_archive) -> str:
  with tarfile.open(real_archive, "r:gz") as tar:
    return tar.extractfile("Info.txt").read().decode("latin-1")


def _build(manual_dir, data_dir, config):
  """Builds one config; returns the builder and its examples by split as numpy dicts."""
  builder = mias_dataset_builder.Builder(config=config, data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder, {split: list(tfds.as_numpy(builder.as_dataset(split=split))) for split in builder.info.splits}


def _extract_dummy(folder: pathlib.Path) -> pathlib.Path:
  with tarfile.open(DUMMY_ARCHIVE) as tar:
    tar.extractall(folder, filter="data")
  return folder


# The parser on the real tables.

def test_real_table_rows_and_image_level_counts(real_info_text):
  assert len(info.parse_rows(real_info_text, "Info.txt")) == 330
  films = info.parse(real_info_text)
  assert len(films) == 322
  assert collections.Counter(f.severity for f in films.values()) == {"normal": 207, "benign": 63, "malignant": 52}
  assert collections.Counter(f.tissue for f in films.values()) == {"F": 106, "G": 104, "D": 112}
  assert {r: len(f.findings) for r, f in films.items() if len(f.findings) > 1} == {
      "mdb005": 2, "mdb132": 2, "mdb144": 2, "mdb223": 2, "mdb226": 3, "mdb239": 2, "mdb249": 2}


def test_real_table_quirks(real_info_text):
  films = info.parse(real_info_text)
  assert [f.severity for f in films["mdb144"].findings] == ["B", "M"]
  assert films["mdb144"].severity == "malignant"
  # Y counts from the bottom in the table: mdb001 "535 425 197" is row 1024 - 425.
  assert films["mdb001"].findings[0] == info.Finding("CIRC", "B", x=535, y=599, radius=197)
  for refnum in ("mdb059", "mdb216", "mdb233", "mdb245"):
    (finding,) = films[refnum].findings
    assert (finding.x, finding.y, finding.radius) == (-1, -1, -1)
    assert finding.severity in ("B", "M")
  assert films["mdb001"].patient_id == films["mdb002"].patient_id == "mias-001"
  assert (films["mdb001"].laterality, films["mdb002"].laterality) == ("R", "L")
  assert films["mdb003"].abnormalities == ("NORM",)


def test_kaggle_table_is_the_same_table(shared_data, real_info_text):
  kaggle = shared_data / "mias" / "Info_kaggle.txt"
  if not kaggle.is_file():
    pytest.skip(f"{kaggle} not found")
  assert info.read(kaggle) == info.parse(real_info_text)


@pytest.mark.parametrize("row, problem", [
    ("mdb001 G CIRC X 535 425 197", "unknown SEVERITY 'X'"),
    ("mdb001 Q CIRC B 535 425 197", "unknown tissue 'Q'"),
    ("mdb001 G BLOB B 535 425 197", "unknown CLASS 'BLOB'"),
    ("mdb001 G CIRC B 535 425", "expected X Y RADIUS"),
    ("mdb001 G CIRC B 535 0 10", "centre X=535 Y=0 is outside the 1024x1024 film"),
    ("mdb001 G NORM B", "NORM row has extra values"),
])
def test_bad_rows_name_file_and_line(row, problem):
  text = f"REFNUM BG CLASS SEVERITY X Y RADIUS\r\nmdb002 G NORM \r\n{row}\r\n"
  with pytest.raises(info.InfoError, match=f"Info_kaggle.txt, line 3: {problem}"):
    info.parse(text, "Info_kaggle.txt")


def test_rows_of_one_film_must_agree():
  with pytest.raises(info.InfoError, match="line 2: mdb001 has tissue D here but G on line 1"):
    info.parse("mdb001 G CIRC B 1 2 3\nmdb001 D CIRC B 4 5 6\n")


def test_text_without_table_rows_is_refused():
  with pytest.raises(info.InfoError, match="README: no table rows"):
    info.parse("MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY\r\n", "README")


# Preprocessing on every real film.

def test_every_real_lesion_centre_is_inside_the_crop_and_chest_wall_ends_left(real_archive, real_info_text):
  films = info.parse(real_info_text)
  source = mias_dataset_builder.find_source(real_archive.parent)
  misplaced, misoriented = [], []
  for film in films.values():
    name = film.file_name
    result = imaging.preprocess(sources.read_pgm(name, io.BytesIO(source.read(name))), size=64, source=name)
    y0, x0, y1, x1 = result.crop_box
    misplaced += [(name, f) for f in film.findings if f.has_position and not (y0 <= f.y < y1 and x0 <= f.x < x1)]
    if result.flipped != (film.laterality == "R"):
      misoriented.append(film.refnum)
  assert not misplaced
  # A breast wider than the film, cut on both sides: no edge tells the chest wall.
  assert misoriented == ["mdb151", "mdb152"]


# The builder on the real archive.

def test_real_archive_builds_the_abnormal_config(real_archive, tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / real_archive.name).symlink_to(real_archive)
  _, examples = _build(manual, tmp_path / "data", "abnormal")
  everything = [ex for split in examples.values() for ex in split]
  assert len(everything) == 115
  assert collections.Counter(int(ex["label"]) for ex in everything) == {0: 63, 1: 52}
  patients = {split: {ex["patient_id"] for ex in split_examples} for split, split_examples in examples.items()}
  assert not patients["train"] & patients["test"] and not patients["train"] & patients["validation"]
  assert not patients["validation"] & patients["test"]
  assert {split: len(split_examples) for split, split_examples in examples.items()} == {
      "train": 79, "validation": 19, "test": 17}


# The builder on broken copies of the made-up archive.

def test_extracted_folder_builds_the_same_as_the_archive(tmp_path):
  _, from_archive = _build(DUMMY_ARCHIVE.parent, tmp_path / "a", "abnormal")
  _, from_folder = _build(_extract_dummy(tmp_path / "manual"), tmp_path / "f", "abnormal")
  key = lambda ex: ex["source"]
  for split, examples in from_archive.items():
    for a, f in zip(sorted(examples, key=key), sorted(from_folder[split], key=key)):
      assert a["image"].tobytes() == f["image"].tobytes() and a["source"] == f["source"]


def test_truncated_and_blank_films_are_skipped_and_counted(tmp_path, monkeypatch):
  manual = _extract_dummy(tmp_path / "manual")
  (manual / "mdb002.pgm").write_bytes((manual / "mdb002.pgm").read_bytes()[:5000])
  blank = (manual / "mdb003.pgm").read_bytes()
  (manual / "mdb003.pgm").write_bytes(blank[:-1024 * 1024] + bytes(1024 * 1024))
  builder, examples = _build(manual, tmp_path / "data", "density")
  sources_built = {ex["source"].decode() for split in examples.values() for ex in split}
  assert len(sources_built) == 16 and not sources_built & {"mdb002.pgm", "mdb003.pgm"}
  assert builder.info.metadata["summary"].startswith("mias: kept 16 images; skipped 2: 1 blank, 1 unreadable")
  monkeypatch.setenv("MAMMO_STRICT", "1")
  with pytest.raises(sources.SourceError, match="mdb00[23].pgm: (unreadable|blank)"):
    _build(manual, tmp_path / "strict", "density")


def test_missing_film_stops_the_build_and_names_it(tmp_path):
  manual = _extract_dummy(tmp_path / "manual")
  (manual / "mdb007.pgm").unlink()
  with pytest.raises(sources.SourceError, match="mdb007.pgm: listed in Info.txt but not found"):
    _build(manual, tmp_path / "data", "abnormal")


def test_unknown_severity_stops_the_build_and_names_file_and_line(tmp_path):
  manual = _extract_dummy(tmp_path / "manual")
  text = (manual / "Info.txt").read_bytes().replace(b"mdb005 D SPIC M", b"mdb005 D SPIC Z")
  (manual / "Info.txt").write_bytes(text)
  with pytest.raises(info.InfoError, match=r"Info.txt, line \d+: unknown SEVERITY 'Z'"):
    _build(manual, tmp_path / "data", "abnormal")


def test_empty_manual_dir_says_what_it_expected(tmp_path):
  with pytest.raises(sources.SourceError, match="found neither all-mias.tar.gz nor an extracted copy"):
    mias_dataset_builder.find_source(tmp_path)


def test_unknown_task_is_refused(tmp_path):
  config = builder_configs.MammoConfig(name="abnormal_224", image_size=224)  # task left at "malignancy"
  with pytest.raises(ValueError, match="unknown task 'malignancy'"):
    mias_dataset_builder.Builder(config=config, data_dir=tmp_path)


def test_truncated_archive_is_an_error_naming_it(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / "all-mias.tar.gz").write_bytes(DUMMY_ARCHIVE.read_bytes()[:20000])
  with pytest.raises(sources.SourceError, match="all-mias.tar.gz: archive is damaged or truncated"):
    _build(manual, tmp_path / "data", "abnormal")
