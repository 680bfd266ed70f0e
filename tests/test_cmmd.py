"""The CMMD builder on trees written by tools/write_cmmd.py, and on the real sheet.

One tree holds every case that is skipped or left out rather than failing
(so the whole dataset is built once); cases that fail the build are checked
on the sheet parser and the first pass, which is where they stop it.
"""
import dataclasses
import re

import numpy as np
import pydicom
import pytest
import tensorflow_datasets as tfds

from mammo_tfds import builder_configs, skips, sources
from mammo_tfds.cmmd import cmmd_dataset_builder as cmmd
from mammo_tfds.cmmd import examples
from mammo_tfds.reasons import Reason
from tools import write_cmmd

SEED = 3
SHAPE = (240, 200)
FLIP = {"Benign": "Malignant", "Malignant": "Benign", None: None}


def _plan():
  """12 patients; D1-0002 16-bit, D1-0003 MONOCHROME1, D2-0001 a copy of D1-0001,
  D2-0002 a copy of D1-0004 with every label flipped (like D1-0808 / D1-1292)."""
  series = write_cmmd.with_special_cases(
      write_cmmd.plan(12, SEED), sixteen_bit=["D1-0002"], monochrome1=["D1-0003"],
      duplicates=[("D1-0001", "D2-0001"), ("D1-0004", "D2-0002")])
  return [dataclasses.replace(s, breasts=tuple(dataclasses.replace(b, classification=FLIP[b.classification])
                                               for b in s.breasts))
          if s.patient_id == "D2-0002" else s for s in series]


def _first_labelled(written, patient_id):
  return next(w for w in written if w.patient_id == patient_id and w.classification)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """The written tree, with one corrupt, one truncated, one untagged and one deleted file."""
  root = tmp_path_factory.mktemp("cmmd_manual")
  written = write_cmmd.write(root, _plan(), SEED, SHAPE)
  truncated, untagged, deleted = (_first_labelled(written, p) for p in ("D1-0005", "D1-0006", "D1-0007"))
  data = (root / truncated.path).read_bytes()
  (root / truncated.path).write_bytes(data[:len(data) // 2])
  ds = pydicom.dcmread(root / untagged.path)
  del ds.ImageLaterality
  ds.save_as(root / untagged.path)
  (root / deleted.path).unlink()
  corrupt = (root / _first_labelled(written, "D2-0003").path).parent / "1-9.dcm"
  corrupt.write_bytes(np.random.default_rng(0).bytes(5000))
  bad = {"truncated": truncated.path, "untagged": untagged.path, "deleted": deleted.path,
         "corrupt": corrupt.relative_to(root).as_posix()}
  return root, {w.path: w for w in written}, bad


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
  """The dataset built from `tree` at 64x64: (builder, {source: (split, example)})."""
  root, _, _ = tree
  builder = cmmd.Builder(data_dir=tmp_path_factory.mktemp("cmmd_data"),
                         config=builder_configs.MammoConfig(name="64", image_size=64))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  examples = {}
  for split in builder.info.splits:
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
      examples[example["source"].decode()] = (split, example)
  return builder, examples


def test_labels_join_on_patient_and_laterality(tree, built):
  _, written, bad = tree
  _, examples = built
  expected = {path for path, w in written.items() if w.classification} - set(bad.values())
  assert set(examples) == expected
  for source, (_, example) in examples.items():
    w = written[source]
    assert example["label"] == ("Benign", "Malignant").index(w.classification), source
    assert example["patient_id"].decode() == w.patient_id
    assert ("L", "R")[example["laterality"]] == w.laterality
    assert ("CC", "MLO")[example["view"]] == w.view
    assert example["subset"].decode() == w.patient_id[:2]


def test_breasts_without_row_are_left_out_and_counted(tree, built):
  _, written, _ = tree
  builder, examples = built
  unlabelled = [path for path, w in written.items() if w.classification is None]
  assert unlabelled, "the plan should have breasts with no sheet row"
  assert not set(unlabelled) & set(examples)
  assert builder.info.metadata["images_without_sheet_row"] == len(unlabelled)
  assert f"left out by design: {len(unlabelled)} images" in builder.info.metadata["summary"]


def test_all_file_naming_schemes_are_read(built):
  _, examples = built
  names = {re.sub(r"[0-9a-f]{10}", "<hash>", source.rsplit("/", 1)[1]) for source in examples}
  assert {"1-<hash>.dcm", "00000001.dcm"} <= names
  assert any(re.fullmatch(r"1-\d\.dcm", name) for name in names)


@pytest.mark.parametrize("patient_id", ["D1-0002", "D1-0003"])
def test_sixteen_bit_and_monochrome1_decoded_bright_breast(tree, built, patient_id):
  root, written, _ = tree
  _, examples = built
  for w in (w for w in written.values() if w.patient_id == patient_id):
    drawn = write_cmmd.source_pixels(SEED, w.patient_id, w.laterality, w.view, w.classification == "Malignant",
                                     SHAPE).astype(np.float64)
    decoded = sources.read_dicom(root / w.path).pixels.astype(np.float64)
    expected = drawn * 255 / drawn.max() if w.bits_stored == 16 else drawn
    assert np.abs(decoded - expected).max() <= 0.5 + 1e-9, w.path
    if w.classification:
      assert w.path in examples


def test_identical_pixels_share_a_split_even_with_different_labels(built):
  builder, examples = built
  split_of = {ex["patient_id"].decode(): split for split, ex in examples.values()}
  assert split_of["D1-0001"] == split_of["D2-0001"]
  assert split_of["D1-0004"] == split_of["D2-0002"]
  conflicting = builder.info.metadata["identical_pixels_different_labels"]
  assert conflicting and all({p.split("/")[1] for p in paths} == {"D1-0004", "D2-0002"} for paths in conflicting)
  assert all(path in examples for paths in conflicting for path in paths)


def test_bad_files_are_skipped_and_counted(tree, built):
  _, written, bad = tree
  builder, _ = built
  skipped = builder.info.metadata["skipped"]
  # Each file under the code its reader raised, not one catch-all phrase.
  assert skipped[Reason.unreadable] == [bad["corrupt"]]
  assert skipped[Reason.undecodable] == [bad["truncated"]]
  assert skipped[Reason.no_laterality] == [bad["untagged"]]
  # Each breast that lost a file (truncated, untagged, deleted) is a sheet row short of images.
  assert len(skipped[Reason.missing_images]) == 3
  assert all(re.fullmatch(r"CMMD_clinicaldata_revision\.xlsx row \d+", r) for r in skipped[Reason.missing_images])
  assert ("skipped 6: 3 missing_images, 1 no_laterality, 1 undecodable, 1 unreadable"
          in builder.info.metadata["summary"])
  assert bad["deleted"] in written


@pytest.mark.parametrize("case, problem", [
    ("corrupt", "not a readable DICOM file"),
    ("truncated", "pixel data cannot be decoded"),
    ("untagged", "no laterality tag"),
])
def test_bad_file_messages_name_the_file(tree, case, problem):
  root, _, bad = tree
  with pytest.raises(sources.SourceError, match=re.escape(problem)) as error:
    examples.scan_file(root / bad[case], bad[case])
  assert bad[case] in str(error.value)


def test_strict_mode_fails_on_the_first_skip(tree):
  root, _, _ = tree
  with pytest.raises(sources.SourceError, match=r"\[strict mode\]"):
    examples.scan(root, skips.SkipLog("cmmd", strict=True))


def _sheet(tmp_path, rows, columns=write_cmmd.SHEET_COLUMNS, sheet_format="xlsx"):
  return write_cmmd.write_sheet(tmp_path, rows, sheet_format, columns)


ROWS = [("D1-0001", "L", 44, 2, "mass", "Benign", None), ("D2-0001", "R", 51, 2, "both", "Malignant", "Luminal A")]


def test_unknown_classification_names_the_row(tmp_path):
  path = _sheet(tmp_path, ROWS + [("D1-0002", "R", 40, 2, "mass", "Benignn", None)])
  with pytest.raises(sources.SourceError, match=r"row 4 \(ID1 'D1-0002', LeftRight 'R'\): unknown "
                     r"classification 'Benignn'") as error:
    examples.read_sheet(path)
  assert path.name in str(error.value)


def test_renamed_column_names_the_file_and_the_columns_found(tmp_path):
  columns = ["ID1", "LeftRight", "Age", "number", "abnormality", "Classification ", "subtype"]
  path = _sheet(tmp_path, ROWS, columns)
  message = f"{path}: missing column(s) classification; columns found: ID1, LeftRight, Age, number, " \
            "abnormality, Classification, subtype"
  with pytest.raises(sources.SourceError, match=re.escape(message)):
    examples.read_sheet(path)


def test_build_stops_on_a_bad_sheet(tmp_path):
  write_cmmd.write_tree(tmp_path / "manual", 2, SEED, (120, 100))
  (tmp_path / "manual" / "CMMD_clinicaldata_revision.xlsx").unlink()
  _sheet(tmp_path / "manual", ROWS + [("D1-0001", "X", 44, 2, "mass", "Benign", None)])
  builder = cmmd.Builder(data_dir=tmp_path / "data", config=builder_configs.MammoConfig(name="64", image_size=64))
  with pytest.raises(sources.SourceError, match="row 4 .*unknown LeftRight 'X'"):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=tmp_path / "manual"))


def test_csv_export_reads_like_the_xlsx_and_missing_age_is_minus_one(tmp_path):
  rows = ROWS + [("D1-0003", "R", None, 2, "calcification", "Malignant", None)]
  xlsx = examples.read_sheet(_sheet(tmp_path, rows))
  csv = examples.read_sheet(_sheet(tmp_path, rows, sheet_format="csv"))
  assert xlsx == csv
  assert csv[("D1-0003", "R")].age == -1
  assert csv[("D2-0001", "R")] == examples.SheetRow(3, "D2-0001", "R", 51, 2, "both", 1, "Luminal A")


def test_no_sheet_or_two_sheets_stop_the_build(tmp_path):
  write_cmmd.write_tree(tmp_path, 1, SEED, (120, 100))
  _sheet(tmp_path, ROWS, sheet_format="csv")
  with pytest.raises(sources.SourceError, match=r"expected one clinical sheet.*found .*\.csv, .*\.xlsx$"):
    examples.find_inputs(tmp_path)
  (tmp_path / "CMMD_clinicaldata_revision.xlsx").unlink()
  (tmp_path / "CMMD_clinicaldata_revision.csv").unlink()
  with pytest.raises(sources.SourceError, match="expected one clinical sheet.*found none"):
    examples.find_inputs(tmp_path)


def test_real_sheet(shared_data):
  rows = examples.read_sheet(shared_data / "cmmd" / "CMMD_clinicaldata_revision.xlsx")
  assert len(rows) == 1872
  labels = [row.label for row in rows.values()]
  assert (labels.count(0), labels.count(1)) == (556, 1316)
  patients = [patient for patient, _ in rows]
  assert sum(patients.count(p) == 2 for p in set(patients)) == 97
  assert rows[("D1-0808", "R")].label != rows[("D1-1292", "R")].label


def test_no_patient_is_in_two_splits(built):
  _, examples = built
  splits_of = {}
  for split, example in examples.values():
    splits_of.setdefault(example["patient_id"].decode(), set()).add(split)
  assert splits_of and all(len(splits) == 1 for splits in splits_of.values())
