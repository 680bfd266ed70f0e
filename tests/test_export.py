"""Exports: each one reloads in a clean process and gives Keras's scores; the calibration map in the
graph is the map; the model card names the preprocessing."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammo_train import config
from mammo_train.deployment import exporter
from mammo_train.deployment import serving_graph
from mammo_train.evaluation import evaluator
from mammo_train.inputs import data
from mammo_train.models import classifiers

SIZE = 32
PLATT = {"method": "platt", "slope": 1.7, "intercept": -0.4, "fitted_on": "a made-up validation split"}
# Knots as scikit-learn's isotonic fit leaves them: a ramp, a flat step (0.3 .. 0.6), a ramp.
ISOTONIC = {"method": "isotonic", "x": [0.05, 0.3, 0.6, 0.95], "y": [0.0, 0.4, 0.4, 1.0]}


def _model(builder=None, scratch=None) -> keras.Model:
  """The cnn under mixed precision, as a run on this CPU trains it; trained for a few seconds when
  given the dataset: an untrained cnn's scores bunch so closely that int8 rounding reorders many."""
  keras.utils.set_random_seed(0)
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = classifiers.cnn(SIZE, 2, 0.0, 0.0)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  if builder is not None:
    images, labels = exporter.split_images(builder, "train", SIZE, scratch / "train.npy")
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit(images, labels.astype("float32"), epochs=15, batch_size=16, verbose=0,
              class_weight=data.balancing_class_weights(data.class_counts(builder)))
  return model


@pytest.fixture(scope="module")
def run_dir(tiny_builder, tmp_path_factory):
  """A run folder as the trainer leaves it: best.keras, run.json, eval/ with metrics and threshold."""
  folder = tmp_path_factory.mktemp("run")
  model = _model(tiny_builder, tmp_path_factory.mktemp("images"))
  model.save(folder / "best.keras")
  splits = {split: data.num_examples(tiny_builder, split) for split in data.SPLITS}
  run = {"dataset": {"name": tiny_builder.info.full_name, "version": str(tiny_builder.info.version),
                     "data_dir": tiny_builder.data_dir, "splits": splits,
                     "classes": tiny_builder.info.features["label"].names,
                     "train_class_counts": data.class_counts(tiny_builder).tolist()},
         "image_size": SIZE, "precision": "mixed_bfloat16"}
  (folder / "run.json").write_text(json.dumps(run))
  evaluator.evaluate_model(folder / "best.keras", tiny_builder, "test", folder / "eval", SIZE, 16,
                          config.Protocol(n_bootstrap=20))
  return folder


@pytest.fixture(scope="module")
def labelled(tiny_builder, tmp_path_factory):
  """Every split of tiny (94 images): test alone (16) is too few for a 0.005 ROC-AUC tolerance."""
  return exporter.split_images(tiny_builder, "all", SIZE, tmp_path_factory.mktemp("images") / "all.npy")


@pytest.fixture(scope="module")
def exported(run_dir, labelled, tmp_path_factory):
  """All three formats into one folder, with an isotonic map (gathers and comparisons: the map most
  likely to meet an op a converter lacks); returns the folder and the final card."""
  out = tmp_path_factory.mktemp("export")
  images, labels = labelled
  for fmt in exporter.FORMATS:
    card = exporter.export(run_dir / "best.keras", fmt, out, calibration=ISOTONIC, images=images, labels=labels,
                         images_name="all 94 images of synthetic/tiny")
  return out, card


@pytest.mark.parametrize("name", ["saved_model", "tflite_float32", "onnx"])
def test_float_export_matches_keras_in_a_clean_process(exported, name):
  _, card = exported
  check = card["exports"][name]["check"]
  assert check["passed"] and check["images"] == 94
  assert set(check["max_abs_diff"]) == {serving_graph.P_MALIGNANT, serving_graph.CALIBRATED}
  assert max(check["max_abs_diff"].values()) <= exporter.FLOAT_TOLERANCE


def test_int8_export_keeps_the_roc_auc(exported):
  _, card = exported
  check = card["exports"]["tflite_int8"]["check"]
  assert check["passed"]
  assert abs(check["roc_auc_export"] - check["roc_auc_keras"]) <= exporter.INT8_AUC_TOLERANCE
  assert card["exports"]["tflite_int8"]["bytes"] < card["exports"]["tflite_float32"]["bytes"] / 2


def test_saved_model_serves_uint8_images_with_plain_tensorflow(exported, labelled):
  """What a TF Serving user calls: the serving_default signature on raw uint8 images."""
  out, _ = exported
  serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
  images, _ = labelled
  outputs = serve(image=tf.constant(images[:5]))
  p = outputs[serving_graph.P_MALIGNANT].numpy()
  assert p.shape == (5,) and np.all((p >= 0) & (p <= 1))
  np.testing.assert_allclose(outputs[serving_graph.CALIBRATED].numpy(), np.interp(p, ISOTONIC["x"], ISOTONIC["y"]),
                             atol=1e-6)


def test_a_mismatch_is_an_error_with_its_figures(run_dir, labelled, tmp_path, monkeypatch):
  """The check is real: held to scores 1e-3 off, the export fails, and the card says by how much."""
  real = exporter.keras_reference
  monkeypatch.setattr(exporter, "keras_reference", lambda *args: {
      name: value + 1e-3 for name, value in real(*args).items()})
  images, labels = labelled
  with pytest.raises(exporter.ExportError, match="onnx do not match Keras"):
    exporter.export(run_dir / "best.keras", "onnx", tmp_path, images=images, labels=labels)
  check = json.loads((tmp_path / exporter.CARD_JSON).read_text())["exports"]["onnx"]["check"]
  assert not check["passed"] and check["max_abs_diff"][serving_graph.P_MALIGNANT] == pytest.approx(1e-3, abs=1e-4)


def test_model_card_names_the_preprocessing_and_the_run(exported, run_dir):
  out, card = exported
  steps = card["preprocessing"]["steps"]
  assert card["preprocessing"]["function"] == "mammo_tfds.imaging.preprocess"
  assert card["preprocessing"]["stored_size"] == 64 and card["preprocessing"]["input_size"] == SIZE
  assert any("preprocess(pixels, size=64)" in step and "chest wall is on the LEFT" in step for step in steps)
  assert any("to 32 x 32 with area averaging" in step for step in steps)
  assert card["model"]["input"] == {"name": "image", "dtype": "uint8", "shape": [None, SIZE, SIZE, 1]}
  assert card["model"]["trained_precision"] == "mixed_bfloat16" and card["model"]["export_precision"] == "float32"
  operating = json.loads((run_dir / "eval" / "operating_point.json").read_text())
  assert card["operating_point"] == operating
  metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
  assert card["test"]["metrics"]["image"]["roc_auc"] == {"value": metrics["levels"]["image"]["roc_auc"],
                                                        "ci": metrics["levels"]["image"]["ci"]["roc_auc"]}
  assert card["dataset"]["split_counts"] == {"train": 66, "validation": 12, "test": 16}
  assert card["calibration"]["map"] == ISOTONIC and card["calibration"]["source"] == "given to export()"
  markdown = (out / exporter.CARD_MD).read_text()
  assert "mammo_tfds.imaging.preprocess(pixels, size=64)" in markdown
  assert "p = np.interp(score, x, y) over 4 knots" in markdown
  assert all(entry["file"] in markdown for entry in card["exports"].values())


def _platt(p):
  p = np.clip(p, 1e-7, 1 - 1e-7)
  return 1 / (1 + np.exp(-(PLATT["slope"] * np.log(p / (1 - p)) + PLATT["intercept"])))


def test_calibration_in_the_graph_is_the_map():
  scores = np.array([0.0, 1e-9, 0.05, 0.1, 0.3, 0.35, 0.6, 0.7, 0.95, 1.0], np.float32)
  np.testing.assert_allclose(serving_graph.calibrate(PLATT, tf.constant(scores)).numpy(), _platt(scores), atol=1e-6)
  # Scores below, on, between and above the knots.
  np.testing.assert_allclose(serving_graph.calibrate(ISOTONIC, tf.constant(scores)).numpy(),
                             np.interp(scores, ISOTONIC["x"], ISOTONIC["y"]), atol=1e-6)


def test_calibration_file_gives_the_image_map(tmp_path):
  path = tmp_path / "calibration.json"
  path.write_text(json.dumps({"image": PLATT, "breast": {**PLATT, "slope": 3.0}}))
  assert serving_graph.image_calibration(path)["slope"] == 1.7


@pytest.mark.parametrize("bad, message", [
    ({"method": "beta"}, "method must be platt or isotonic"),
    ({"method": "platt", "slope": 1.0}, "needs slope and intercept"),
    ({"method": "isotonic", "x": [0.5, 0.1], "y": [0.0, 1.0]}, "x ascending"),
    ({"breast": PLATT}, "no image-level map"),
])
def test_bad_calibration_is_one_clear_error(bad, message):
  with pytest.raises(ValueError, match=message):
    serving_graph.image_calibration(bad)


def test_mixed_precision_model_is_exported_in_float32():
  model = _model()
  rebuilt = classifiers.float32_model(model)
  assert {layer.dtype_policy.compute_dtype for layer in rebuilt.layers} == {"float32"}
  images = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 1), dtype=np.uint8)
  np.testing.assert_allclose(rebuilt.predict(images, verbose=0), model.predict(images, verbose=0), atol=0.05)
  assert classifiers.float32_model(rebuilt) is rebuilt


def test_unknown_format_and_missing_model_are_refused(tmp_path):
  with pytest.raises(ValueError, match="format must be one of saved_model, tflite, onnx"):
    exporter.export(tmp_path / "best.keras", "coreml", tmp_path)
  with pytest.raises(ValueError, match="no such model file"):
    exporter.export(tmp_path / "best.keras", "onnx", tmp_path)


def test_card_writes_out_a_platt_map():
  lines = exporter._decision_section(None, {"map": PLATT, "source": "run/eval/calibration.json"})
  assert any("p = sigmoid(1.7 * logit(score) + -0.4)" in line and "a made-up validation split" in line
             for line in lines)


def test_multiclass_model_serves_its_class_probabilities():
  images = keras.Input((SIZE, SIZE, 1), dtype="uint8")
  features = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(images))
  model = keras.Model(images, keras.layers.Dense(3, activation="softmax")(features))
  outputs = serving_graph.Serving(model).serve(tf.zeros((2, SIZE, SIZE, 1), tf.uint8))
  assert set(outputs) == {serving_graph.PROBABILITIES} and outputs[serving_graph.PROBABILITIES].shape == (2, 3)
  with pytest.raises(ValueError, match="a calibration map is for P\\(malignant\\)"):
    serving_graph.Serving(model, PLATT)
