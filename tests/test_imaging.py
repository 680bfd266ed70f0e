"""Crop / orient / pad / resize properties of mammo_tfds.imaging."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from mammo_tfds import imaging, phantom


def _film(rng, malignant=True, laterality="L", view="MLO", shape=(300, 250)):
  return phantom.draw(rng, *shape, malignant, laterality, view)


def test_crop_drops_film_label_and_keeps_the_breast():
  pixels = np.zeros((400, 300), np.uint8)
  pixels[50:350, 0:180] = 120  # breast against the left edge
  pixels[10:30, 250:290] = 240  # film label, separate and bright
  y0, x0, y1, x1 = imaging.breast_box(pixels)
  assert y0 <= 50 and y1 >= 350 and x0 == 0 and x1 >= 180
  assert x1 < 250, "the film label must be cut away"


def test_crop_keeps_faint_skin_at_low_threshold():
  pixels = np.zeros((400, 300), np.uint8)
  pixels[50:350, 0:150] = 120
  pixels[150:250, 150:200] = 30  # faint skin / axillary tail, above 20 but below Otsu levels
  assert imaging.breast_box(pixels)[3] >= 200


def test_box_is_never_smaller_than_the_exact_region():
  rng = np.random.default_rng(1)
  pixels = _film(rng, shape=(1100, 900))  # downscaled labelling path (factor 3)
  mask = pixels > imaging.BREAST_THRESHOLD
  from scipy import ndimage
  labels, _ = ndimage.label(mask)
  largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
  rows, cols = np.nonzero(labels == largest)
  y0, x0, y1, x1 = imaging.breast_box(pixels)
  assert y0 <= rows.min() and x0 <= cols.min() and y1 > rows.max() and x1 > cols.max()


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_chest_wall_ends_up_on_the_left(laterality):
  result = imaging.preprocess(_film(np.random.default_rng(2), laterality=laterality), 128)
  image = result.image[:, :, 0]
  assert result.flipped == (laterality == "R")
  assert (image[:, :12] > imaging.BREAST_THRESHOLD).mean() > (image[:, -12:] > imaging.BREAST_THRESHOLD).mean()


def test_output_shape_dtype_and_lesion_mapping():
  yy, xx = np.mgrid[0:300, 0:200]
  # Half-disc breast against the RIGHT edge: will be flipped.
  pixels = np.where(np.hypot(yy - 150, xx - 199) < 110, 100, 0).astype(np.uint8)
  pixels[147:154, 127:134] = 255  # a "lesion" centred on (150, 130)
  result = imaging.preprocess(pixels, 64)
  assert result.image.shape == (64, 64, 1) and result.image.dtype == np.uint8
  assert result.flipped
  row, col = imaging.source_to_output(150, 130, result, 64)
  assert 0 <= row < 64 and 0 <= col < 64
  # The brightest stored pixel is where the lesion was mapped to.
  peak = np.unravel_index(np.argmax(result.image[:, :, 0]), (64, 64))
  assert abs(peak[0] - row) <= 1.5 and abs(peak[1] - col) <= 1.5


@pytest.mark.parametrize("pixels", [np.zeros((100, 80), np.uint8), np.full((100, 80), 5, np.uint8)])
def test_blank_image_is_a_clear_error(pixels):
  with pytest.raises(imaging.BlankImageError, match="blank.png.*blank"):
    imaging.preprocess(pixels, 32, source="blank.png")


def test_wrong_dtype_is_refused():
  with pytest.raises(ValueError, match="uint8"):
    imaging.preprocess(np.zeros((10, 10), np.uint16), 32)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(1, 90), st.integers(1, 90))))
def test_random_arrays_give_a_valid_box_or_a_blank_error(pixels):
  try:
    result = imaging.preprocess(pixels, 16)
  except imaging.BlankImageError:
    assert (pixels > imaging.BREAST_THRESHOLD).mean() < imaging.MIN_FOREGROUND_FRACTION
    return
  y0, x0, y1, x1 = result.crop_box
  assert 0 <= y0 < y1 <= pixels.shape[0] and 0 <= x0 < x1 <= pixels.shape[1]
  assert result.image.shape == (16, 16, 1)
  # Every pixel of the largest bright region is inside the box.
  assert (pixels[y0:y1, x0:x1] > imaging.BREAST_THRESHOLD).any()


@pytest.mark.parametrize("laterality", ["L", "R"])
def test_output_to_source_reads_the_map_where_source_to_output_points(laterality):
  pixels = _film(np.random.default_rng(4), laterality=laterality, shape=(300, 260))
  result = imaging.preprocess(pixels, 48)
  assert result.flipped == (laterality == "R")
  rows, cols = np.mgrid[0:48, 0:48].astype(np.float32)
  plane = 1000 * rows + cols  # linear, so linear interpolation of it is exact
  source = imaging.output_to_source(plane, result.crop_box, result.flipped, pixels.shape)
  y0, x0, y1, x1 = result.crop_box
  for y, x in np.random.default_rng(5).integers([y0, x0], [y1, x1], size=(200, 2)):
    row, col = imaging.source_to_output(y, x, result, 48)
    expected = 1000 * min(row, 47) + min(col, 47)
    assert source[y, x] == pytest.approx(expected, abs=1e-2)
  outside = np.ones(pixels.shape, bool)
  outside[y0:y1, x0:x1] = False
  assert source.shape == pixels.shape and not source[outside].any()


def test_output_to_source_refuses_a_bad_map_or_box():
  with pytest.raises(ValueError, match="square 2-D map"):
    imaging.output_to_source(np.zeros((4, 5)), [0, 0, 10, 10], False, (10, 10))
  with pytest.raises(ValueError, match="does not fit a source of shape"):
    imaging.output_to_source(np.zeros((4, 4)), [0, 0, 20, 10], False, (10, 10))


def test_real_mias_films_are_not_treated_as_scanned_films(shared_data, tmp_path):
  """The scanned-film path (`film_on_black`) must leave every real mini-MIAS film as it is: their
  background is black, so their crop stays the plain low-threshold one (DESIGN.md, mdb212 / mdb214)."""
  import tarfile  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  archive = shared_data / "mias" / "all-mias.tar.gz"
  if not archive.is_file():
    pytest.skip(f"{archive} not found")
  with tarfile.open(archive) as tar:
    tar.extractall(tmp_path, filter="data")
  films = sorted(tmp_path.rglob("*.pgm"))
  assert len(films) == 322
  for path in films:
    pixels = np.asarray(Image.open(path))
    assert imaging.film_background(pixels) is None, path.name
    assert imaging.film_on_black(pixels) is pixels, path.name
