"""RSNA Screening Mammography: the builder on trees written by tools/write_rsna.py, and a model trained on one.

One tree with every special case (rare views, a row without its file, a file
without its row, a laterality contradicting its row, a pixel copy, a
test.csv with test_images) is built plain and on Beam; a copy with a broken
CSV value checks the refusal. Polarity tests assert the RIGHT picture for
every header variant, read through the reader's rules with no override: the
planted lesion bright, the (padded) background black, whatever
PixelIntensityRelationshipSign says. The build audit has one row per file of
the tree.
"""
import collections
import dataclasses
import json
import pathlib

from absl import flags
import keras
import numpy as np
import pydicom
import pytest

from mammo_tfds import audit, builder_configs, sources
from mammo_tfds.reasons import Reason
from mammo_tfds.rsna_screening import examples, rsna_screening_dataset_builder as rsna
from mammo_train import __main__ as trainer
from mammo_train import config
from mammo_train.evaluation import assessment
from tests import prepared
from tests.test_audit import _read_audit
from tools import write_rsna

SEED = 2
PATIENTS = 32
SCALE = 0.03
SIZE = 64
ADMITTED_BY = "DX for presentation + ImageLaterality"  # sources.admission's rule for the stripped files


def _build(manual_dir, data_dir, beam=False, strict=False):
  """(builder, {image_id: (split, example)}) of a build at SIZE x SIZE."""
  builder = rsna.Builder(data_dir=str(data_dir), config=builder_configs.MammoConfig(name="64", image_size=SIZE),
                         strict=strict)
  found = {example["source"].decode().rsplit("/", 1)[1][:-len(".dcm")]: (split, example)
           for split, example in prepared.prepare_and_read(builder, manual_dir, beam)}
  return builder, found


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """(manual dir, {image_id: write_rsna.Image})."""
  root = tmp_path_factory.mktemp("rsna")
  written = write_rsna.write_tree(root, PATIENTS, SEED, SCALE, specials=True, test_patients=2)
  return root, {str(image.image_id): image for image in written}


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
  return _build(tree[0], tmp_path_factory.mktemp("rsna_tfds"))


# ---- reading the stripped files -------------------------------------------------------------------------------

def _variant(machine):
  name = f"{machine.photometric}-{machine.bits}bit-{'j2k' if machine.jpeg2000 else 'raw'}" + (
      "-padding0" if machine.padding_zero else "")
  return pytest.param(machine, id=name)


@pytest.mark.parametrize("machine", [_variant(machine) for machine in write_rsna.MACHINES])
def test_every_header_variant_reads_bright_dense_with_a_black_background(machine, tmp_path):
  image = dataclasses.replace(write_rsna.plan(1, SEED)[0], machine=machine, cancer=1)
  write_rsna.write(tmp_path, [image], SEED, scale=0.04, test_patients=0)
  read = sources.read(tmp_path / image.path)  # no override: the rules must admit the stripped header
  film = write_rsna.source_film(SEED, image, 0.04)
  drawn = film.pixels
  assert read.admitted_by == ADMITTED_BY
  assert read.pixels.shape == drawn.shape and read.laterality == image.laterality
  background = drawn < 8  # stored as PixelPaddingValue (0 on the padding0 machine: white unless honoured)
  y0, x0, y1, x1 = film.lesion_box
  lesion = np.zeros_like(background)
  lesion[y0:y1, x0:x1] = True
  lesion &= ~background
  breast = ~background & ~lesion
  drawn_contrast = drawn[lesion].mean() - drawn[breast].mean()
  assert drawn_contrast > 40, "the fixture must plant a visible lesion"
  assert read.pixels[background].mean() < 20, "the padded background must be black"
  assert read.pixels[lesion].mean() - read.pixels[breast].mean() > 0.5 * drawn_contrast, \
      "the planted lesion must stay brighter than the breast around it"
  assert np.corrcoef(read.pixels.ravel(), drawn.ravel())[0, 1] > 0.9
  # The MONOCHROME2 machines' LOG sign +1 contradicts the display chain: recorded, not followed.
  assert bool(read.polarity_note) == (machine.photometric == "MONOCHROME2")


def test_a_file_without_image_laterality_is_not_admitted_on_its_rows_word(tmp_path):
  write_rsna.write_tree(tmp_path, 1, SEED, 0.02, specials=False, test_patients=0)
  row = examples.plan(tmp_path).rows[0]
  ds = pydicom.dcmread(tmp_path / row.path)
  del ds.ImageLaterality
  ds.save_as(tmp_path / row.path)
  (skip,) = examples.image_example(str(tmp_path), SIZE, examples.Item(row, ""))
  assert skip.path == row.path and skip.reason == Reason.not_mammogram


def test_written_files_are_stripped_like_the_real_ones(tree):
  root, written = tree
  image = next(image for image in written.values() if image.has_file and image.machine.jpeg2000)
  ds = pydicom.dcmread(root / image.path)
  assert ds.file_meta.MediaStorageSOPClassUID == write_rsna.DX_FOR_PRESENTATION
  assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
  for absent in ("Modality", "SOPClassUID", "BodyPartExamined", "ViewPosition", "ViewCodeSequence"):
    assert absent not in ds, absent
  assert ds.ImageLaterality in ("L", "R") and "PixelPaddingValue" in ds


# ---- the build ----------------------------------------------------------------------------------------------

def test_examples_are_joined_to_their_rows_by_id(built, tree):
  _, found = built
  _, written = tree
  assert found, "nothing was built"
  for image_id, (_, example) in found.items():
    image = written[image_id]
    assert example["patient_id"].decode() == str(image.patient_id)
    assert example["label"] == image.cancer
    assert example["laterality"] == "LR".index(image.laterality)
    assert example["machine_id"].decode() == str(image.machine.machine_id)
    assert example["site_id"].decode() == str(image.machine.site_id)
    assert example["age"] == (-1 if image.age is None else image.age)
    assert example["birads"] == (-1 if image.birads is None else image.birads)
    assert example["density"].decode() == (image.density or examples.MISSING)
    assert example["implant"] == image.implant and example["biopsy"] == image.biopsy
    assert example["csv_view"].decode() == image.view
    assert example["view"] == ("CC", "MLO").index(examples.VIEWS[image.view])


def test_every_file_and_row_is_an_example_or_a_counted_skip(built, tree):
  builder, found = built
  _, written = tree
  assert dict(collections.Counter({r: len(p) for r, p in builder.skip_log.skipped.items()})) == {
      Reason.missing_images: 1, Reason.no_label_row: 1, Reason.laterality_disagrees: 1}
  metadata = builder.info.metadata
  assert metadata["axillary_tail_views_left_out"] == 1
  assert metadata["test_images_not_built"] == 8
  rows = [image for image in written.values() if image.has_row]
  assert metadata["csv_rows"] == len(rows)
  expected = {str(i.image_id) for i in rows if i.has_file and i.view != "AT" and i.file_laterality is None}
  assert set(found) == expected
  assert {written[i].view for i in found} == {"CC", "MLO", "ML", "LM", "LMO"}
  line = builder._summary_line()  # pylint: disable=protected-access
  assert "skipped 3" in line and "1 axillary tail (AT) views, 8 unlabelled test_images" in line


def test_the_audit_has_one_row_per_file_of_the_tree_and_per_row_without_file(built, tree):
  builder, found = built
  root, written = tree
  rows, page = _read_audit(pathlib.Path(builder.data_path))
  files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.dcm"))
  (missing,) = [image for image in written.values() if image.has_row and not image.has_file]
  row_number = next(row.row for row in examples.read_csv(root / "train.csv") if row.image_id == str(missing.image_id))
  assert sorted(row["path"] for row in rows) == sorted(files + [f"train.csv row {row_number}"])
  # Skips and left-outs by design apart, as the summary line counts them ("skipped 3; left out by design: ...").
  left = collections.Counter((row["fate"], row["reason"]) for row in rows if row["fate"] != audit.EXAMPLE)
  assert left == {(audit.SKIPPED, Reason.missing_images): 1, (audit.SKIPPED, Reason.no_label_row): 1,
                  (audit.SKIPPED, Reason.laterality_disagrees): 1, (audit.LEFT_OUT, examples.AT_LEFT_OUT): 1,
                  (audit.LEFT_OUT, examples.TEST_IMAGE_LEFT_OUT): 8}
  kept = {row["key"]: row for row in rows if row["fate"] == audit.EXAMPLE}
  assert set(kept) == set(found)
  for image_id, row in kept.items():
    split, example = found[image_id]
    assert row["admitted_by"] == ADMITTED_BY and row["split"] == split
    assert row["label"] == examples.LABEL_NAMES[example["label"]]
    assert row["chest_wall"] == {"L": "left", "R": "right"}[written[image_id].laterality], row  # the phantom's
  split_of = {row["patient_id"]: row["split"] for row in kept.values()}
  at_view = next(row for row in rows if row["reason"] == examples.AT_LEFT_OUT)
  assert at_view["view"] == "AT" and at_view["split"] == split_of[at_view["patient_id"]]  # its patient's split
  assert sum(len(card["images"]) == 2 for card in page.cards) == len(kept)


def test_splits_are_by_patient_stratified_and_keep_pixel_copies_together(built, tree):
  builder, found = built
  _, written = tree
  split_of = collections.defaultdict(set)
  for image_id, (split, _) in found.items():
    split_of[written[image_id].patient_id].add(split)
  assert all(len(splits) == 1 for splits in split_of.values())
  copy = next(image for image in written.values() if image.pixels_from)
  assert split_of[copy.patient_id] == split_of[copy.pixels_from]
  assert len(builder.info.metadata["identical_pixels"]) == 4  # four views copied
  for stratum in (0, 1):  # patients with any cancer, and without: each cut 70 / 15 / 15 to within rounding
    patients = {written[i].patient_id for i in found
                if max(written[j].cancer for j in found if written[j].patient_id == written[i].patient_id) == stratum}
    per_split = collections.Counter(next(iter(split_of[patient])) for patient in patients)
    assert abs(per_split["train"] - 0.7 * len(patients)) <= 1.5 and per_split["test"] >= 1, (stratum, per_split)


def test_beam_build_equals_the_plain_build(built, tree, tmp_path):
  _, plain = built
  _, beam = _build(tree[0], tmp_path, beam=True)
  assert set(beam) == set(plain)
  for image_id, (split, example) in plain.items():
    assert beam[image_id][0] == split
    np.testing.assert_array_equal(beam[image_id][1]["image"], example["image"])
    assert beam[image_id][1]["label"] == example["label"]


def test_strict_mode_stops_at_the_row_without_a_file(tree, tmp_path):
  with pytest.raises(sources.SourceError, match="missing_images") as error:
    _build(tree[0], tmp_path, strict=True)
  assert error.value.code == Reason.missing_images


def test_a_csv_value_outside_the_known_ones_names_file_and_row(tmp_path):
  write_rsna.write_tree(tmp_path, 5, SEED, 0.02, specials=False, test_patients=0)
  csv_path = tmp_path / "train.csv"
  lines = csv_path.read_text().splitlines()
  lines[3] = lines[3].replace(",CC,", ",XCCL,").replace(",MLO,", ",XCCL,")
  csv_path.write_text("\n".join(lines) + "\n")
  with pytest.raises(sources.SourceError, match=r"train.csv: row 4 .*unknown view 'XCCL'"):
    examples.plan(tmp_path)


def test_a_manual_dir_without_the_download_is_one_clear_error(tmp_path):
  with pytest.raises(sources.SourceError, match="no train.csv"):
    examples.plan(tmp_path)


# ---- a model trained and evaluated on it -----------------------------------------------------------------------

def test_training_and_evaluation_report_site_and_machine_against_the_metadata_baseline(built, tmp_path):
  builder, _ = built
  workdir = tmp_path / "run"
  with pytest.MonkeyPatch.context() as patch:
    values = flags.FlagValues()
    config.define_train_flags(values)
    values(["mammo_train", f"--dataset={builder.name}/{builder.builder_config.name}",
            f"--data_dir={builder.data_dir_root}", f"--workdir={workdir}", "--image_size=64", "--batch_size=8",
            "--epochs=1", "--precision=float32", "--n_bootstrap=20", "--model=cnn"])
    patch.setattr(flags, "FLAGS", values)
    try:
      trainer.main(["mammo_train"])
    finally:
      keras.mixed_precision.set_global_policy("float32")
  result = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert result["dataset"]["class_names"] == list(examples.LABEL_NAMES)
  assert result["subgroups"]["declaration"]["shortcuts"] == ["site_id", "machine_id", "age"]
  image_features = {row["feature"] for row in result["subgroups"]["levels"]["image"]}
  assert {"site_id", "machine_id", "density", "implant", "view", "laterality"} <= image_features
  baseline = result["baselines"][assessment.METADATA_BASELINE]
  assert "site_id, machine_id, age" in baseline["description"]
  strata = result["strata"]["levels"]["breast"]
  assert {"site_id", "machine_id"} <= {row["feature"] for row in strata}
  assert sum(row["n"] for row in strata if row["feature"] == "machine_id") == result["levels"]["breast"]["n"]
  for level in ("image", "breast"):
    assert "pf1" in result["levels"][level] and "pf1" in result["levels"][level]["ci"]
  report = (workdir / "eval" / "report.md").read_text()
  assert "pf1" in report and "machine_id" in report


def test_writer_usage_errors_exit_2_with_one_line(tmp_path, capsys):
  for argv in (["--patients", "3", "--specials"], ["--scale", "0"]):
    with pytest.raises(SystemExit) as exit_:
      write_rsna.main([str(tmp_path / "tree"), *argv])
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
