"""The manifest builder on a mixed-format folder written by tools/write_manifest.py, bad rows included."""
import csv
import json
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mammo_tfds import builder_configs, sources
from mammo_tfds.reasons import Reason
from mammo_tfds.manifest import examples, manifest_dataset_builder as manifest
from tools import write_manifest

SIZE = 64


def _build(manual_dir, data_dir, strict=False):
  builder = manifest.Builder(data_dir=str(data_dir), config=builder_configs.MammoConfig(name="64", image_size=SIZE),
                             strict=strict)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  found = {}
  for split in builder.info.splits:
    for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
      found[example["source"].decode()] = (split, example)
  return builder, found


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("manifest")
  return root, write_manifest.write(root, num_patients=8, bad_rows=True)


@pytest.fixture(scope="module")
def built(folder, tmp_path_factory):
  root, _ = folder
  return _build(root, tmp_path_factory.mktemp("manifest_data"))


def _rewrite(root, change):
  """Rewrites manifest.csv through change(list of row dicts)."""
  path = root / "manifest.csv"
  with open(path, newline="") as handle:
    rows = list(csv.DictReader(handle))
  rows = change(rows)
  with open(path, "w", newline="") as handle:
    writer = csv.DictWriter(handle, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def test_every_format_is_read_and_bad_rows_are_skipped(folder, built):
  _, written = folder
  builder, found = built
  good = [w for w in written if w.problem is None]
  assert {w.file_format for w in good} == set(write_manifest.FORMATS)
  assert set(found) == {w.path for w in good}
  for image in good:
    _, example = found[image.path]
    assert example["label"] == ("benign", "malignant").index(image.label)
    assert example["patient_id"].decode() == image.patient_id
    assert "LR"[example["laterality"]] == image.laterality  # DICOM rows: from the tags
    assert ("CC", "MLO")[example["view"]] == image.view
    assert bool(example["flipped"]) == (image.laterality == "R"), image.path
  assert builder.skip_log.skipped == {Reason.not_found: ["manifest.csv line 18 (images/missing/cc.png)"],
                                      Reason.unreadable: ["manifest.csv line 19 (images/corrupt/mlo.png)"]}
  assert "kept 16 images; skipped 2: 1 not_found, 1 unreadable" in builder.info.metadata["summary"]


def test_other_columns_are_kept_as_json_metadata(built):
  _, found = built
  _, example = found["images/PT001/cc.dcm"]
  assert json.loads(example["metadata"].decode()) == {"age": "40", "site": "south"}


def test_patients_with_identical_pixels_share_a_split_and_splits_are_patient_disjoint(folder, built):
  _, written = folder
  builder, found = built
  duplicate = next(w for w in written if w.duplicate_of)
  assert found[duplicate.path][0] == found[duplicate.duplicate_of][0]
  np.testing.assert_array_equal(found[duplicate.path][1]["image"], found[duplicate.duplicate_of][1]["image"])
  assert builder.info.metadata["identical_pixels_patients"] == [["PT001", "PT008"]]
  split_of = {}
  for split, example in found.values():
    assert split_of.setdefault(example["patient_id"], split) == split


def test_the_manifest_split_column_is_used_and_checked(folder, tmp_path):
  root, written = folder
  copy = tmp_path / "copy"
  shutil.copytree(root, copy)
  splits_of = {"PT001": "test", "PT008": "test", "PT002": "validation"}

  def with_splits(rows):
    for row in rows:
      row["split"] = splits_of.get(row["patient_id"], "train")
    return rows

  _rewrite(copy, with_splits)
  builder, found = _build(copy, tmp_path / "data")
  assert builder.info.metadata["splits_from"] == "manifest"
  for split, example in found.values():
    assert split == splits_of.get(example["patient_id"].decode(), "train")

  # PT008 duplicates PT001's pixels: putting them in different splits is refused.
  splits_of["PT008"] = "train"
  _rewrite(copy, with_splits)
  with pytest.raises(sources.SourceError, match=r"patient PT00[18] is in split .* on line \d+ \(patients with "
                     "identical pixels count as one\\)"):
    _build(copy, tmp_path / "data2")


def test_bad_manifest_values_stop_the_build_naming_the_line(folder, tmp_path):
  root, _ = folder
  shutil.copytree(root, tmp_path / "copy")

  def misspelt(rows):
    rows[2]["label"] = "malignnat"
    return rows

  _rewrite(tmp_path / "copy", misspelt)
  with pytest.raises(sources.SourceError, match=r"manifest.csv line 4: unknown label 'malignnat' "
                     r"\(expected one of: benign, malignant\)"):
    examples.read_manifest(tmp_path / "copy")


def test_strict_mode_stops_on_a_bad_row(folder, tmp_path):
  root, _ = folder
  with pytest.raises(sources.SourceError, match=r"\[strict mode\]"):
    _build(root, tmp_path / "data", strict=True)
