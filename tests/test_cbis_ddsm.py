"""CBIS-DDSM: the real case CSVs, and the builder on trees written by tools/write_cbis.py.

One plan is written in all three layouts (TCIA classic, TCIA descriptive,
Kaggle JPEG) and each is built once; a copy of the classic tree with broken
files checks the skip rules, and a Beam build of the classic tree checks
that Beam writes the same examples.
"""
import collections
import dataclasses
import io
import shutil

import numpy as np
import pydicom
from PIL import Image
import pytest

from mammo_tfds import builder_configs, imaging, sources
from mammo_tfds.cbis_ddsm import cases, cbis_ddsm_dataset_builder as cbis, examples
from mammo_train.evaluation import subgroups
from mammo_train.inputs import data
from tests import prepared
from tools import write_cbis

SEED = 5
PATIENTS = 9
SHAPE = (400, 250)
SIZE = 64


def _build(manual_dir, data_dir, beam=False, strict=False):
  """(builder, {key: (split, example)}) of a build at SIZE x SIZE."""
  builder = cbis.Builder(data_dir=str(data_dir), config=builder_configs.MammoConfig(name="64", image_size=SIZE),
                         strict=strict)
  found = {examples.film_key((example["patient_id"].decode(), "LR"[example["laterality"]],
                              ("CC", "MLO")[example["view"]])): (split, example)
           for split, example in prepared.prepare_and_read(builder, manual_dir, beam)}
  return builder, found


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
  """layout -> (manual dir, {film key: WrittenFilm})."""
  result = {}
  for layout in write_cbis.LAYOUTS:
    root = tmp_path_factory.mktemp(f"cbis_{layout}")
    written = write_cbis.write_tree(root, PATIENTS, layout, SEED, SHAPE, realistic=True)
    result[layout] = (root, {examples.film_key((w.film.patient, w.film.side[0], w.film.view)): w for w in written})
  return result


@pytest.fixture(scope="module")
def built(trees, tmp_path_factory):
  """layout -> (builder, {key: (split, example)})."""
  return {layout: _build(root, tmp_path_factory.mktemp(f"data_{layout}")) for layout, (root, _) in trees.items()}


def _comparable(example) -> dict:
  """Everything but the pixels, the source path and what JPEG compression may move."""
  return {name: value for name, value in example.items()
          if name not in ("image", "source", "crop_box", "flipped", "orientation")}


def _assert_equal(left, right, where):
  assert left.keys() == right.keys(), where
  for name, value in left.items():
    if isinstance(value, dict):
      _assert_equal(value, right[name], f"{where}/{name}")
    else:
      np.testing.assert_array_equal(value, right[name], err_msg=f"{where}/{name}")


# The real CSVs.

@pytest.fixture(scope="module")
def real_cases(shared_data):
  folder = shared_data / "cbis-ddsm" / "csv"
  if not folder.is_dir():
    pytest.skip(f"{folder} not found")
  return cases.read_cases(folder)


def test_real_csvs_parse_with_every_quirk(real_cases):
  assert len(real_cases) == 3568
  assert collections.Counter(c.pathology for c in real_cases) == {
      "MALIGNANT": 1457, "BENIGN": 1429, "BENIGN_WITHOUT_CALLBACK": 682}
  assert len({c.patient_id for c in real_cases}) == 1566
  films = cases.films(real_cases)
  assert len(films) == 3032
  assert sum(len({c.kind for c in film}) == 2 for film in films.values()) == 71
  assert len({c.full_series for c in real_cases}) == 3103
  assert len(examples.patients_in_both(real_cases)) == 31
  # Both density columns read (mass: breast_density, calc: breast density), newline-ended paths too.
  assert {c.density for c in real_cases} == {0, 1, 2, 3, 4}
  assert all(c.mask_series.replace(".", "").isdigit() and c.crop_series.replace(".", "").isdigit()
             for c in real_cases)
  assert sum(c.crop_series != c.mask_series for c in real_cases) == 104


def test_real_splits_keep_every_patient_on_one_side(real_cases):
  split_of = examples.assign_splits(real_cases)
  films = cases.films(real_cases)
  by_split = collections.Counter((split_of[key[0]], examples.label(film)) for key, film in films.items())
  official_test = {c.patient_id for c in real_cases if c.official_split == "test"}
  assert {p for p, s in split_of.items() if s == "test"} == official_test
  assert set(examples.patients_in_both(real_cases)) <= official_test
  patients = collections.Counter(split_of.values())
  assert patients["validation"] == pytest.approx(0.15 * (patients["train"] + patients["validation"]), abs=3)
  # The expected counts of the full build (films per split and label: 0 benign, 1 malignant).
  assert sum(by_split.values()) == 3032
  assert by_split[("test", 0)] + by_split[("test", 1)] == sum(
      1 for key in films if key[0] in official_test)


def test_real_films_subgroup_values(real_cases):
  """README's subgroup counts; density is one value per film, so the first row's stands for the film."""
  films = cases.films(real_cases).values()
  assert collections.Counter(examples.abnormality_type(film) for film in films) == {
      "mass": 1521, "calcification": 1440, "both": 71}
  assert all(len({c.density for c in film}) == 1 for film in films)
  assert {max(c.subtlety for c in film) for film in films} == {1, 2, 3, 4, 5}


def test_csv_value_outside_the_known_ones_names_file_and_row(tmp_path):
  write_cbis.write_tree(tmp_path, 2, "classic", SEED, (120, 72))
  path = tmp_path / "mass_case_description_train_set.csv"
  text = path.read_text()
  first_pathology = next(p for p in write_cbis.PATHOLOGIES if f",{p}," in text)
  path.write_text(text.replace(f",{first_pathology},", ",MALIGANT,", 1))
  with pytest.raises(sources.SourceError, match=r"mass_case_description_train_set.csv row \d+: unknown pathology "
                     r"'MALIGANT' \(expected one of: BENIGN, BENIGN_WITHOUT_CALLBACK, MALIGNANT\)"):
    cases.read_cases(tmp_path)


# The builder on written trees.

def test_all_layouts_give_the_same_examples(built, trees):
  classic = built["classic"][1]
  for layout in ("descriptive", "kaggle"):
    other = built[layout][1]
    assert other.keys() == classic.keys() == trees[layout][1].keys(), layout
    for key, (split, example) in classic.items():
      other_split, other_example = other[key]
      assert other_split == split, (layout, key)
      _assert_equal(_comparable(example), _comparable(other_example), f"{layout}/{key}")
      if layout == "descriptive":  # the same DICOMs: the same pixels
        np.testing.assert_array_equal(example["image"], other_example["image"])
        np.testing.assert_array_equal(example["crop_box"], other_example["crop_box"])
      else:  # JPEG copies: close
        np.testing.assert_allclose(example["crop_box"], other_example["crop_box"], atol=SHAPE[0] * 0.03)
  assert "TCIA classic" in built["classic"][0]._summary_line()  # pylint: disable=protected-access
  assert "TCIA descriptive" in built["descriptive"][0]._summary_line()  # pylint: disable=protected-access
  assert "Kaggle JPEG" in built["kaggle"][0]._summary_line()  # pylint: disable=protected-access


@pytest.mark.parametrize("layout", write_cbis.LAYOUTS)
def test_labels_abnormalities_and_lesion_boxes(built, trees, layout):
  _, found = built[layout]
  root, written = trees[layout]
  for key, film in written.items():
    _, example = found[key]
    pathologies = [a.pathology for a in film.film.abnormalities]
    assert example["label"] == int("MALIGNANT" in pathologies), key
    abnormalities = example["abnormalities"]
    got = sorted(zip([cases.KINDS[t] for t in abnormalities["type"]], abnormalities["id"],
                     [tuple(b) for b in abnormalities["box"]]))
    assert got == sorted((kind, number, box) for kind, number, box in film.boxes), key
    rois = sorted(zip([cases.KINDS[t] for t in abnormalities["type"]], abnormalities["id"],
                      [r.decode() for r in abnormalities["roi"]]))
    assert rois == sorted(film.roi_outcomes), key
    expected_pathology = {(a.kind, a.number): a.pathology for a in film.film.abnormalities}
    for kind, number, pathology in zip(abnormalities["type"], abnormalities["id"], abnormalities["pathology"]):
      assert cases.PATHOLOGIES[pathology] == expected_pathology[(cases.KINDS[kind], number)]
    # A film in both CSVs is one example, from one of its two series.
    assert example["source"].decode() in film.sources
    assert len(film.sources) == len(film.film.kinds)


def test_metadata_declares_the_subgroups_and_the_evaluation_reads_them(built, trees):
  builder, _ = built["classic"]
  _, written = trees["classic"]
  declared = subgroups.declared(builder)
  assert declared.columns == ("abnormality", "breast_density", "subtlety", "view", "laterality")
  assert declared.shortcuts == ()
  seen = collections.Counter()
  for split in builder.info.splits:
    metadata = data.split_metadata(builder, split, extra=declared.columns)
    groups = {feature.name: feature.values(metadata[feature.name]) for feature in declared.features}
    for i, patient in enumerate(metadata["patient_id"]):
      film = written[examples.film_key((patient, metadata["laterality"][i], metadata["view"][i]))].film
      kinds = film.kinds
      assert groups["abnormality"][i] == (kinds[0] if len(kinds) == 1 else "both"), patient
      assert groups["breast_density"][i] == str(film.density)
      assert groups["subtlety"][i] == str(max(a.subtlety for a in film.abnormalities))
      seen[groups["abnormality"][i]] += 1
  assert sum(seen.values()) == len(written) and seen["both"] >= 1 and seen["mass"] and seen["calcification"]


@pytest.mark.parametrize("layout", write_cbis.LAYOUTS)
def test_crop_keeps_every_lesion_and_drops_the_film_around_it(built, trees, layout):
  """Every lesion inside the crop; the crop within the breast's box and a small margin, so no label,
  ruler or border strip beyond the breast is in it, whether or not it touches the breast."""
  _, found = built[layout]
  _, written = trees[layout]
  margin = round(0.03 * max(SHAPE))
  for key, film in written.items():
    _, example = found[key]
    y0, x0, y1, x1 = example["crop_box"]
    for (by0, bx0, by1, bx1), roi in zip(example["abnormalities"]["box"], example["abnormalities"]["roi"]):
      if roi.decode() in (examples.ROI_FOUND, examples.ROI_SWAPPED):
        assert y0 <= by0 and x0 <= bx0 and by1 <= y1 and bx1 <= x1, (key, example["crop_box"])
    b0, b1, b2, b3 = film.breast_box
    assert b0 - margin <= y0 and b1 - margin <= x0 and y1 <= b2 + margin and x1 <= b3 + margin, (
        key, film.film, example["crop_box"], film.breast_box)
    for a0, a1, a2, a3 in film.artefacts:
      if a2 <= b0 - margin or a0 >= b2 + margin or a3 <= b1 - margin or a1 >= b3 + margin:
        assert a2 <= y0 or a0 >= y1 or a3 <= x0 or a1 >= x1, (key, film.film, example["crop_box"])
    assert bool(example["flipped"]) == (film.chest_wall == "right"), key


def test_written_films_carry_every_artefact_both_ways():
  """The plan the tests build covers labels at every edge and corner, touching the breast and not, rulers
  along every edge, strips on every edge, margins, and ROI series swapped and missing."""
  films = write_cbis.plan(PATIENTS, SEED, realistic=True)
  assert {(f.label_at, f.label_touches) for f in films} == {(p, t) for p in write_cbis.PLACES for t in (0, 1)}
  assert {(f.ruler_at, f.ruler_touches) for f in films} == {(e, t) for e in write_cbis.EDGES for t in (0, 1)}
  assert set().union(*(f.strips for f in films)) == set(write_cbis.EDGES)
  assert {f.margin > 0 for f in films} == {True, False}
  rows = [a for f in films for a in f.abnormalities]
  assert any(a.swapped and a.mask_apart for a in rows) or any(a.swapped for a in rows)
  assert any(a.roi_missing for a in rows) and any(not a.swapped and not a.roi_missing for a in rows)


@pytest.mark.parametrize("layout", write_cbis.LAYOUTS)
def test_roi_files_are_decided_from_pixels_and_swaps_counted(built, trees, layout):
  """A swapped ROI series (CSV and descriptions naming the mask the cropped image) never skips a film;
  missing ROI files leave the film with its label and no box; all counted in the summary line."""
  builder, found = built[layout]
  _, written = trees[layout]
  assert found.keys() == written.keys() and builder.skip_log.count() == 0
  expected = collections.Counter(outcome for w in written.values() for _, _, outcome in w.roi_outcomes)
  assert expected[examples.ROI_SWAPPED] and expected[examples.ROI_MISSING] and expected[examples.ROI_FOUND]
  assert builder.roi_counts == expected
  line = builder._summary_line()  # pylint: disable=protected-access
  assert (f"{expected[examples.ROI_FOUND]} found, {expected[examples.ROI_SWAPPED]} roi_swapped, "
          f"{expected[examples.ROI_MISSING]} roi_missing, 0 roi_unusable") in line


def test_films_scanned_the_other_way_round_are_counted(built, trees):
  builder, found = built["classic"]
  _, written = trees["classic"]
  reversed_films = {key for key, film in written.items() if film.film.reversed}
  overruled = {key for key, (_, example) in found.items()
               if example["orientation"].decode() == "pixels, laterality disagrees"}
  assert reversed_films and overruled == reversed_films
  assert f"the pixels overruled the laterality on {len(reversed_films)} films" in builder._summary_line()  # pylint: disable=protected-access


def test_splits_are_patient_disjoint_and_the_official_test_set_stays_test(built, trees):
  builder, found = built["classic"]
  _, written = trees["classic"]
  split_of_patient = collections.defaultdict(set)
  for split, example in found.values():
    split_of_patient[example["patient_id"].decode()].add(split)
  assert all(len(s) == 1 for s in split_of_patient.values())
  for key, film in written.items():
    split, example = found[key]
    in_test = any(official == "test" for _, official in film.film.official)
    assert example["official_split"] == int(in_test)
    patient_in_test = any(official == "test" for w in written.values() if w.film.patient == film.film.patient
                          for _, official in w.film.official)
    assert (split == "test") == patient_in_test, key
  # Patient 2 of every plan is in both official sets: moved to test, and said so.
  assert builder.info.metadata["patients_in_both_official_sets_moved_to_test"] == ["P_00004"]
  assert builder.info.metadata["films_with_two_series"] == 2  # patient 1's breast in both CSVs, CC and MLO


def test_beam_build_equals_the_plain_build(trees, built, tmp_path):
  root, _ = trees["classic"]
  _, plain = built["classic"]
  _, beam = _build(root, tmp_path / "beam", beam=True)
  assert beam.keys() == plain.keys()
  for key, (split, example) in plain.items():
    assert beam[key][0] == split
    _assert_equal(example, beam[key][1], key)


# Bad input.

@pytest.fixture(scope="module")
def broken(trees, tmp_path_factory):
  """The classic tree with a full mammogram deleted, a mask of the wrong size and a corrupt mask."""
  source, written = trees["classic"]
  root = tmp_path_factory.mktemp("cbis_broken") / "tree"
  shutil.copytree(source, root)
  keys = sorted(written)
  deleted = keys[2]
  (root / written[deleted].sources[0]).unlink()
  masks = {}  # the true masks: ROI files of the film's size (descriptions may say otherwise)
  for path in root.rglob("*.dcm"):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if ds.SeriesDescription != write_cbis.FULL and (ds.Rows, ds.Columns) == SHAPE:
      masks.setdefault(examples.film_key((ds.PatientID.split("_", 1)[1][:7], ds.Laterality, ds.PatientOrientation)),
                       path)
  small_mask, corrupt = [key for key in keys if key in masks and key != deleted][1:3]
  ds = pydicom.dcmread(masks[small_mask])
  half = ds.pixel_array[::2, ::2].copy()
  ds.Rows, ds.Columns = half.shape
  ds.PixelData = half.tobytes()
  ds.save_as(masks[small_mask])
  data = masks[corrupt].read_bytes()
  masks[corrupt].write_bytes(data[:len(data) // 2])
  return root, {"deleted": deleted, "small_mask": small_mask, "corrupt": corrupt}


def test_bad_input_is_skipped_and_counted(broken, built, tmp_path):
  """Only a missing full mammogram skips a film; a mask of the wrong size or a corrupt one leaves its film
  in the dataset, labelled, without that box."""
  root, bad = broken
  builder, found = _build(root, tmp_path / "data")
  assert set(found) == set(built["classic"][1]) - {bad["deleted"]}
  assert dict(builder.skip_log.skipped) == {examples.FULL_MISSING: [bad["deleted"]]}
  for key in (bad["small_mask"], bad["corrupt"]):
    _, example = found[key]
    assert example["label"] == built["classic"][1][key][1]["label"], key
    rois = [r.decode() for r in example["abnormalities"]["roi"]]
    assert examples.ROI_UNUSABLE in rois, key
    unusable = rois.index(examples.ROI_UNUSABLE)
    np.testing.assert_array_equal(example["abnormalities"]["box"][unusable], [0, 0, 0, 0])
  assert builder.roi_counts[examples.ROI_UNUSABLE] >= 2
  line = builder._summary_line()  # pylint: disable=protected-access
  assert "skipped 1: 1 full_mammogram_missing" in line
  assert f"{builder.roi_counts[examples.ROI_UNUSABLE]} roi_unusable" in line


def test_strict_mode_stops_on_bad_input(broken, tmp_path):
  root, _ = broken
  with pytest.raises(sources.SourceError, match=r"\[strict mode\]"):
    _build(root, tmp_path / "data", strict=True)


def test_masks_and_crops_are_told_apart_by_content():
  mask = np.zeros((50, 40), np.uint8)
  mask[10:20, 5:15] = 255
  assert examples.is_mask(mask)
  np.testing.assert_array_equal(examples.lesion_box(mask), [10, 5, 20, 15])
  crop = np.random.default_rng(0).integers(40, 200, size=(12, 12)).astype(np.uint8)
  assert not examples.is_mask(crop)
  # A Kaggle JPEG of a mask is not exactly binary: ringing at its edges stays within the tolerance.
  buffer = io.BytesIO()
  Image.fromarray(mask).save(buffer, format="JPEG", quality=95)
  jpeg = np.asarray(Image.open(buffer))
  assert set(np.unique(jpeg)) - {0, 255} and examples.is_mask(jpeg)
  # A crop of a mass that is bright at the centre and dark around is still no mask.
  yy, xx = np.mgrid[0:40, 0:40]
  assert not examples.is_mask(np.clip(255 - 6 * np.hypot(yy - 20, xx - 20), 0, 255).astype(np.uint8))


def test_film_on_black_leaves_images_on_black_untouched():
  pixels = np.zeros((200, 120), np.uint8)
  pixels[40:160, :70] = 120
  pixels[5:15, 90:115] = 250  # a label on black: the plain crop drops it
  assert imaging.film_on_black(pixels) is pixels


def test_written_films_are_scanned_films():
  film = dataclasses.replace(write_cbis.plan(1, SEED)[0], label_touches=True, strips=("top", "near"))
  pixels, masks, chest_wall, _, _ = write_cbis.film_pixels(SEED, film, SHAPE)
  eight = np.rint(pixels / pixels.max() * 255).astype(np.uint8)
  assert imaging.film_background(eight) is not None  # grey, noisy background
  near = eight[:, :2] if chest_wall == "left" else eight[:, -2:]
  assert (eight[:2] > 200).mean() > 0.8 and (near > 200).mean() > 0.8  # strips along the edge (a ruler may lie on one)
  assert masks
