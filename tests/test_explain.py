"""Grad-CAM, its mapping back to source pixels, and the lesion-localisation measures."""
import keras
import numpy as np
import pytest
from PIL import Image

from mammo_tfds import imaging
from mammo_train.evaluation import explain, saliency_pictures
from mammo_train.models import classifiers

# The planted bright square of the hand-made film: rows, columns in source pixels.
SQUARE = (slice(140, 170), slice(190, 220))


def film_with_square() -> np.ndarray:
  """A breast against the RIGHT edge (so preprocessing flips it), a film label to crop away, a bright square."""
  yy, xx = np.mgrid[0:360, 0:320]
  pixels = np.where(np.hypot(yy - 170, xx - 319) < 150, 100, 0).astype(np.uint8)
  pixels[10:30, 10:60] = 240  # film label, cut away by the crop
  pixels[SQUARE] = 255
  return pixels


def square_detector(size: int) -> keras.Model:
  """A model named like the cnn whose last conv block responds to the brightest pixels only.

  Its CAM layer is relu(x - 0.8) on [0, 1] pixels: 0 on the breast (100/255),
  positive on the square (255/255); the score is the maximum of it.
  """
  inputs = keras.Input((size, size, 1), dtype="uint8", name="image")
  x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
  x = keras.layers.Conv2D(1, 1, kernel_initializer="ones", bias_initializer=keras.initializers.Constant(-0.8),
                          name="block4_conv")(x)
  x = keras.layers.ReLU(name="block4_relu")(x)
  x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
  outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="ones", name="output")(x)
  return keras.Model(inputs, outputs, name="cnn")


def test_heatmap_mapped_to_source_lands_on_the_planted_square():
  pixels = film_with_square()
  result = imaging.preprocess(pixels, 64)
  assert result.flipped and result.crop_box[1] > 100, "the case must exercise crop and flip"
  heatmap = explain.grad_cam(square_detector(64), result.image[None])[0]
  source = explain.to_source([heatmap], [result.crop_box], [result.flipped], [pixels.shape])[0]
  assert source.shape == pixels.shape
  box = np.array([[SQUARE[0].start, SQUARE[1].start, SQUARE[0].stop, SQUARE[1].stop]])
  assert explain.pointing_hits([source], [box])[0]
  # Only the interpolation's blur at the square's edge falls outside it.
  assert explain.mass_inside([source], [box])[0] > 0.8
  assert source[:, :150].max() == 0 and source[10:30, 10:60].max() == 0


def test_grad_cam_of_a_mirrored_square_moves_with_it():
  """A wrong flip or offset in the mapping would put a mirrored square's heat on the original's place."""
  pixels = film_with_square()[:, ::-1].copy()  # breast on the left now: no flip
  result = imaging.preprocess(pixels, 64)
  assert not result.flipped
  heatmap = explain.grad_cam(square_detector(64), result.image[None])[0]
  source = imaging.output_to_source(heatmap, result.crop_box, result.flipped, pixels.shape)
  row, col = np.unravel_index(np.argmax(source), source.shape)
  assert SQUARE[0].start <= row < SQUARE[0].stop and 319 - SQUARE[1].stop < col <= 319 - SQUARE[1].start


@pytest.mark.parametrize("name, size", [("cnn", 64), ("resnet50", 64), ("vgg16", 64), ("inceptionv3", 75)])
def test_grad_cam_runs_for_every_model_and_explains_its_output(name, size):
  model = classifiers.build(name, size, 2, "none", 0.3, 0.0)
  images = np.random.default_rng(0).integers(0, 256, (3, size, size, 1), dtype=np.uint8)
  maps = explain.grad_cam(model, images, batch_size=2)
  assert maps.shape == (3, size, size) and maps.dtype == np.float32
  assert maps.min() >= 0 and maps.max() <= 1
  assert np.all((maps.max(axis=(1, 2)) == 1) | (maps.max(axis=(1, 2)) == 0))
  # The composed forward pass (through the nested backbone) is the model's own.
  _, features = explain._activations_and_features(model)(images)  # pylint: disable=protected-access
  output = model.get_layer("output")
  logits = np.asarray(features, dtype=np.float32) @ np.asarray(output.kernel) + np.asarray(output.bias)
  np.testing.assert_allclose(1 / (1 + np.exp(-logits)), model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)


def test_grad_cam_refuses_images_of_the_wrong_size():
  with pytest.raises(ValueError, match=r"\[N, 64, 64, 1\]"):
    explain.grad_cam(square_detector(64), np.zeros((1, 32, 32, 1), np.uint8))


def test_pointing_game_and_mass_on_constructed_cases():
  hot = np.zeros((4, 20, 20))
  hot[0, 5, 5] = 1  # inside its box
  hot[1, 15, 15] = 1  # outside its box
  hot[2] = 1  # uniform: maximum at (0, 0), inside its second box; mass = box area share
  # hot[3] all zero: a miss with no mass
  boxes = [[[4, 4, 8, 8]], [[0, 0, 10, 10]], [[10, 10, 12, 12], [0, 0, 5, 4]], [[0, 0, 20, 20]]]
  np.testing.assert_array_equal(explain.pointing_hits(hot, boxes), [True, False, True, False])
  np.testing.assert_allclose(explain.mass_inside(hot, boxes), [1, 0, (4 + 20) / 400, 0])
  result = explain.localisation(hot, boxes, ["a", "a", "b", "c"], n_resamples=200)
  assert result["n"] == 4 and result["n_patients"] == 3 and result["n_blank"] == 1
  assert result["pointing_game"]["value"] == 0.5
  low, high = result["pointing_game"]["ci"]
  assert 0 <= low < 0.5 < high <= 1


def test_localisation_leaves_out_images_without_a_lesion_box_and_counts_them():
  hot = np.zeros((3, 10, 10))
  hot[:, 2, 2] = 1
  boxes = [[0, 0, 5, 5], [0, 0, 0, 0], [1, 1, 3, 3]]  # the second: the synthetic "no lesion" box
  result = explain.localisation(hot, boxes, ["a", "b", "c"], n_resamples=50)
  assert result["n"] == 2 and result["n_without_lesion_box"] == 1
  assert result["pointing_game"] == {"value": 1.0, "ci": [1.0, 1.0]}


def test_circle_boxes_skip_findings_without_a_position():
  boxes = explain.circle_boxes(x=[100, -1], y=[200, -1], radius=[10, -1])
  np.testing.assert_array_equal(boxes, [[190, 90, 211, 111]])


def test_box_to_output_matches_the_mapped_square():
  pixels = film_with_square()
  result = imaging.preprocess(pixels, 64)
  y0, x0, y1, x1 = explain.box_to_output([140, 190, 170, 220], result.crop_box, result.flipped, 64)
  rows, cols = np.nonzero(result.image[:, :, 0] > 200)
  assert y0 - 1 <= rows.min() and rows.max() < y1 + 1 and x0 - 1 <= cols.min() and cols.max() < x1 + 1


def test_overlay_files_hold_the_image_and_the_heatmap(tmp_path):
  pixels = film_with_square()
  heatmap = np.zeros(pixels.shape, np.float32)
  heatmap[SQUARE] = 1
  png, npy = saliency_pictures.write_overlay(tmp_path / "sub" / "mdb001", pixels, heatmap)
  np.testing.assert_array_equal(np.load(npy), heatmap)
  rgb = np.asarray(Image.open(png))
  assert rgb.shape == pixels.shape + (3,)
  cold = heatmap == 0
  np.testing.assert_array_equal(rgb[cold], np.repeat(pixels[cold][:, None], 3, axis=1))
  assert not np.array_equal(rgb[SQUARE][..., 0], rgb[SQUARE][..., 2])  # coloured where hot


def test_grid_cases_pick_the_most_confident_of_each_cell_and_the_figure_draws():
  labels = np.array([1, 1, 1, 0, 0, 0, 1])
  scores = np.array([0.9, 0.6, 0.2, 0.1, 0.3, 0.8, 0.95])
  rows = saliency_pictures.grid_cases(labels, scores, threshold=0.5, per_row=2)
  # malignant correct, malignant wrong, benign correct, benign wrong
  assert [list(r) for r in rows] == [[6, 0], [2], [3, 4], [5]]
  images = np.zeros((7, 16, 16, 1), np.uint8)
  png = saliency_pictures.grid_png(images, np.zeros((7, 16, 16)), labels, scores, 0.5, per_row=2,
                         boxes=[np.array([[2, 2, 6, 6]])] * 7)
  assert png.startswith(b"\x89PNG")


def test_lesion_boxes_of_synthetic_and_mias_examples():
  np.testing.assert_array_equal(explain.lesion_boxes({"lesion_box": np.array([1, 2, 3, 4])}), [[1, 2, 3, 4]])
  # mdb144-like: a malignant film with a benign and a malignant finding, and one without a position.
  findings = {"severity": np.array([0, 1, 1]), "x": np.array([10, 500, -1]), "y": np.array([10, 400, -1]),
              "radius": np.array([5, 20, -1])}
  np.testing.assert_array_equal(explain.lesion_boxes({"label": 1, "findings": findings}),
                                [[380, 480, 421, 521]])
  assert explain.lesion_boxes({"label": 1}) is None


def test_to_source_without_shapes_covers_the_crop():
  maps = explain.to_source([np.ones((8, 8))], [np.array([5, 10, 25, 30])], [False])
  assert maps[0].shape == (25, 30) and maps[0][5:, 10:].min() == 1 and maps[0][:5].max() == 0


def split_localisation(heatmaps, crop_boxes, flipped, boxes, labels, patient_ids, n_resamples: int = 1000,
                       seed: int = 0) -> dict:
  """The in-memory reference of the streamed localisation (`explain.explain_split`): `localisation` of a binary split's heatmaps (model input frame), per class: malignant is the target.

  `boxes` per image as `lesion_boxes` gives them (None: not recorded, left
  out and counted like an empty box). Benign lesions are scored too, for
  comparison: the heatmap explains the malignant score, so on a benign
  image it shows what looked most malignant.
  """
  sources = explain.to_source(heatmaps, crop_boxes, flipped)
  measures = [None if b is None else explain.image_localisation(s, b) for s, b in zip(sources, boxes)]
  return explain.localisation_by_class(measures, labels, patient_ids, n_resamples, seed)


def test_split_localisation_scores_each_class_in_source_pixels():
  heat = np.zeros((3, 8, 8))
  heat[:, 1, 6] = 1  # stored column 6 of a flipped 8-wide crop at x0=10 is source column 11
  crops, flipped = [np.array([0, 10, 8, 18])] * 3, [True, True, True]
  boxes = [np.array([[0, 10, 3, 13]]), np.array([[0, 14, 3, 18]]), None]
  result = split_localisation(heat, crops, flipped, boxes, labels=[1, 0, 1], patient_ids=["a", "b", "c"],
                                      n_resamples=20)
  assert result["malignant"]["n"] == 1 and result["malignant"]["n_without_lesion_box"] == 1
  assert result["malignant"]["pointing_game"]["value"] == 1.0
  assert result["benign"]["pointing_game"]["value"] == 0.0


def test_grad_cam_of_a_softmax_model_and_of_the_benign_score():
  images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)
  maps = explain.grad_cam(classifiers.build("cnn", 32, 3, "none", 0.3, 0.0), images, target_class=2)
  assert maps.shape == (2, 32, 32) and 0 <= maps.min() and maps.max() <= 1
  # The square detector has only evidence for malignant: its benign map is empty.
  result = imaging.preprocess(film_with_square(), 64)
  assert explain.grad_cam(square_detector(64), result.image[None], target_class=0).max() == 0


def test_grad_cam_names_an_unknown_model():
  inputs = keras.Input((8, 8, 1))
  model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(inputs)), name="mlp")
  with pytest.raises(ValueError, match="'mlp'"):
    explain.grad_cam(model, np.zeros((1, 8, 8, 1), np.uint8))
