"""The serving graph every export holds: the trained model rebuilt in float32, the run's calibration map
inside the graph, one signature (uint8 image -> P(malignant), calibrated too), and the writers of each format.

Exports compute in float32 (`classifiers.float32_model`); the calibration map is part of the graph, so a deployer
needs nothing but the export and its runtime (the exporter's docstring says why and how it is checked).
"""
import json
import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from mammo_train.models import classifiers

SIGNATURE = "serving_default"
INPUT = "image"
P_MALIGNANT, CALIBRATED, PROBABILITIES = "p_malignant", "p_malignant_calibrated", "probabilities"
# tf2onnx's default opset, which ONNX Runtime (1.32 here) runs.
ONNX_OPSET = 17
# Scores are clipped away from 0 and 1 before the logit, as mammo_train.evaluation.calibration does.
_EPSILON = 1e-7


class ExportError(Exception):
  """An export could not be made, or does not give Keras's scores."""


def is_binary_model(model: keras.Model) -> bool:
  return classifiers.is_binary(model.output.shape[-1])


def image_calibration(calibration) -> dict | None:
  """The image-level calibration map from a calibration.json path, its parsed content, or one map.

  A calibration file (mammo_train.evaluation.calibration) holds one map per level ('image', 'breast'); an
  export scores single images, so it takes the image map. A map is {"method": "platt", "slope",
  "intercept"} (p = sigmoid(slope * logit(score) + intercept)) or {"method": "isotonic", "x", "y"}
  (p = np.interp(score, x, y)).

  Raises:
    ValueError: not a calibration map, naming the file and what is wrong.
  """
  if calibration is None:
    return None
  where = "calibration"
  if isinstance(calibration, (str, os.PathLike)):
    where = str(calibration)
    try:
      calibration = json.loads(pathlib.Path(calibration).read_text())
    except (OSError, ValueError) as error:
      raise ValueError(f"{where}: not a calibration file ({error})") from None
  if isinstance(calibration, dict) and "method" not in calibration:
    if "image" not in calibration:
      raise ValueError(f"{where}: no image-level map (levels: {', '.join(calibration) or 'none'})")
    calibration = calibration["image"]
  method = calibration.get("method") if isinstance(calibration, dict) else None
  needed = {"platt": ("slope", "intercept"), "isotonic": ("x", "y")}.get(method)
  if needed is None:
    raise ValueError(f"{where}: calibration method must be platt or isotonic, got {method!r}")
  if any(calibration.get(key) is None for key in needed):
    raise ValueError(f"{where}: a {method} map needs {' and '.join(needed)}")
  if method == "isotonic":
    x, y = np.asarray(calibration["x"], float), np.asarray(calibration["y"], float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or np.any(np.diff(x) < 0):
      raise ValueError(f"{where}: isotonic x and y must be equally long (>= 2) with x ascending")
  return dict(calibration)


def calibrate(calibration: dict, scores: tf.Tensor) -> tf.Tensor:
  """The calibration map in TensorFlow ops that SavedModel, TFLite and ONNX all have.

  Isotonic interpolation is np.interp (constant beyond the end knots), its segment found by
  counting the knots at or below each score: comparisons, a sum and gathers, ops that the TFLite
  builtins and tf2onnx both have (tf.searchsorted was not tried).
  """
  scores = tf.cast(scores, tf.float32)
  if calibration["method"] == "platt":
    clipped = tf.clip_by_value(scores, _EPSILON, 1 - _EPSILON)
    logit = tf.math.log(clipped) - tf.math.log(1 - clipped)
    return tf.sigmoid(float(calibration["slope"]) * logit + float(calibration["intercept"]))
  x = tf.constant(calibration["x"], tf.float32)
  y = tf.constant(calibration["y"], tf.float32)
  knots = len(calibration["x"])
  # Knots at or below each score: the right end of its segment is knot `above`.
  at_or_below = tf.reduce_sum(tf.cast(scores[:, None] >= x[None, :], tf.int32), axis=1)
  above = tf.clip_by_value(at_or_below, 1, knots - 1)
  x0, x1 = tf.gather(x, above - 1), tf.gather(x, above)
  y0, y1 = tf.gather(y, above - 1), tf.gather(y, above)
  width = x1 - x0
  t = tf.where(width > 0, (scores - x0) / tf.where(width > 0, width, 1.0), 0.0)
  inside = y0 + tf.clip_by_value(t, 0.0, 1.0) * (y1 - y0)
  return tf.where(scores <= x[0], y[0], tf.where(scores >= x[-1], y[-1], inside))


class Serving:
  """The exported signature: uint8 images -> P(malignant) (and calibrated), or class probabilities."""

  def __init__(self, model: keras.Model, calibration: dict | None = None):
    if calibration is not None and not is_binary_model(model):
      raise ValueError(f"a calibration map is for P(malignant); {model.name} has "
                       f"{model.output.shape[-1]} classes")
    self.model = model
    self.calibration = calibration
    size = model.input_shape[1]
    self.serve = tf.function(self.outputs, input_signature=[tf.TensorSpec([None, size, size, 1], tf.uint8,
                                                                           name=INPUT)])

  def outputs(self, image):
    return self.from_model_outputs(self.model(image, training=False))

  def from_model_outputs(self, raw) -> dict:
    """The signature's outputs from the Keras model's: also the reference the exports are held to."""
    raw = tf.cast(raw, tf.float32)
    if not is_binary_model(self.model):
      return {PROBABILITIES: raw}
    p = classifiers.p_malignant(raw)
    outputs = {P_MALIGNANT: p}
    if self.calibration is not None:
      outputs[CALIBRATED] = calibrate(self.calibration, p)
    return outputs


def save_saved_model(serving: Serving, folder) -> None:
  """Through Keras's ExportArchive: a plain tf.Module holding the model saves a SavedModel that
  TensorFlow serves correctly, but whose variables the TFLite converter keeps as uninitialised
  resource variables (VAR_HANDLE / READ_VARIABLE ops; every output NaN)."""
  archive = keras.export.ExportArchive()
  archive.track(serving.model)
  archive.add_endpoint(SIGNATURE, serving.outputs, input_signature=serving.serve.input_signature)
  archive.write_out(str(folder), verbose=False)


def save_tflite(saved_model_dir, float_path, int8_path) -> None:
  """float32, and dynamic-range int8 (weights int8, activations float: no calibration images needed)."""
  pathlib.Path(float_path).write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert())
  converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  pathlib.Path(int8_path).write_bytes(converter.convert())


def save_onnx(serving: Serving, path) -> None:
  """Through tf2onnx from the same tf.function as the SavedModel (so the same outputs and names)."""
  try:
    import tf2onnx
  except ImportError:
    raise ExportError("the onnx format needs tf2onnx (in setup.cfg's install_requires): reinstall mammo") from None
  tf2onnx.convert.from_function(serving.serve, input_signature=serving.serve.input_signature,
                                opset=ONNX_OPSET, output_path=str(path))
