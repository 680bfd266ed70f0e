"""Where a model looked: Grad-CAM heatmaps, mapped back onto the source image, and checked against lesions.

Grad-CAM (Selvaraju et al., 2017) weights the last convolutional layer's
feature maps by the gradient of the class score averaged over each map,
keeps the positive part and upsamples it to the input. It needs no change to
the model and works for every model here, the cnn and the Keras applications
backbones alike. The class score is the LOGIT, not the sigmoid / softmax
output: a confident model's probability saturates and its gradient
underflows to zero, while the logit's gradient differs from it only by a
positive factor per image, which the per-image normalisation removes.

Heatmaps are computed on the model's own input (uint8 [B, S, S, 1], as the
trainer feeds it) and mapped back to source pixels with
`mammo_tfds.imaging.output_to_source`, the inverse of the preprocessing.

The localisation measures answer "does it point at the lesion?" where a
dataset records lesion boxes: the pointing game (is the heatmap's maximum in
a lesion box; Zhang et al., 2016) and the share of heatmap mass inside the
boxes, both with a patient-level bootstrap interval.
"""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from mammo_tfds import imaging
from mammo_train.evaluation import metrics

# The layer whose feature maps Grad-CAM weighs, per model (models.py names the
# models): the cnn's last conv block after its ReLU, before the pooling that
# would halve the map (16x16 at 128 px); the last convolutional stage of each
# backbone (ResNet50: the last residual block's output; VGG16: the last conv
# before its pool; InceptionV3: the last mixed block), each 1/32 of the input.
CAM_LAYERS = {
    "cnn": "block4_relu",
    "resnet50": "conv5_block3_out",
    "vgg16": "block5_conv3",
    "inceptionv3": "mixed10",
}
# The outer layers of a backbone model ahead of the nested "backbone" layer, in order.
_BACKBONE_INPUT_LAYERS = ("grayscale_to_rgb", "preprocess")


def cam_layer(model: keras.Model) -> str:
  if model.name not in CAM_LAYERS:
    raise ValueError(f"Grad-CAM: no convolutional layer known for model {model.name!r}; "
                     f"known: {sorted(CAM_LAYERS)}")
  return CAM_LAYERS[model.name]


def _activations_and_features(model: keras.Model):
  """A function images -> (the CAM layer's feature maps, the input of the output layer).

  A backbone is one nested functional layer, whose inner layers are not on the
  outer model's graph; a model from the backbone's input to [inner layer,
  backbone output] reaches them and is composed with the outer layers, which
  are the same objects (same weights) as in `model`.
  """
  layer = cam_layer(model)
  if model.name == "cnn":
    inner = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("output").input])
    return lambda images: inner(images, training=False)
  backbone = model.get_layer("backbone")
  inner = keras.Model(backbone.input, [backbone.get_layer(layer).output, backbone.output])
  rgb, preprocess = (model.get_layer(name) for name in _BACKBONE_INPUT_LAYERS)
  dropout = model.get_layer("dropout")

  def run(images):
    activations, features = inner(preprocess(rgb([images, images, images])), training=False)
    return activations, dropout(features, training=False)

  return run


def grad_cam(model: keras.Model, images: np.ndarray, batch_size: int = 32,
             target_class: int | None = None) -> np.ndarray:
  """Grad-CAM heatmaps [N, S, S] float32 in [0, 1] of uint8 images [N, S, S, 1].

  Args:
    model: a model of `mammo_train.models.classifiers` (cnn, resnet50, vgg16, inceptionv3).
    images: the model's input, uint8 at its input size.
    target_class: the class whose score is explained. None: malignant for a
      binary (sigmoid) model, the predicted class for a softmax one.

  Each map is divided by its maximum, so 1 is where that image's evidence
  is strongest; a map with no positive evidence for the class is all 0.
  """
  cam_layer(model)  # an unknown model: say so before anything else
  images = np.asarray(images)
  size = tuple(model.input.shape[1:3])
  if images.ndim != 4 or images.shape[1:] != size + (1,):
    raise ValueError(f"Grad-CAM: expected images of shape [N, {size[0]}, {size[1]}, 1], got {images.shape}")
  forward = _activations_and_features(model)
  output = model.get_layer("output")
  binary = output.units == 1
  maps = []
  for start in range(0, len(images), batch_size):
    batch = tf.convert_to_tensor(images[start:start + batch_size])
    with tf.GradientTape() as tape:
      activations, features = forward(batch)
      tape.watch(activations)
      logits = tf.matmul(tf.cast(features, tf.float32), output.kernel) + output.bias
      if binary:
        score = logits[:, 0] if target_class in (None, 1) else -logits[:, 0]
      else:
        classes = (tf.argmax(logits, axis=1) if target_class is None
                   else tf.fill([tf.shape(logits)[0]], tf.cast(target_class, tf.int64)))
        score = tf.gather(logits, classes, batch_dims=1)
    gradients = tf.cast(tape.gradient(score, activations), tf.float32)
    activations = tf.cast(activations, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1, keepdims=True))
    maps.append(tf.image.resize(cam, size, method="bilinear")[..., 0].numpy())
  maps = np.concatenate(maps) if maps else np.zeros((0,) + size, np.float32)
  peak = maps.max(axis=(1, 2), keepdims=True)
  return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def to_source(heatmaps, crop_boxes, flipped, source_shapes=None) -> list:
  """Each heatmap over the model input mapped onto its source image's pixels (a list: shapes differ).

  The datasets store no source size: without `source_shapes` each map covers
  rows and columns 0 up to its crop box's end, the smallest source frame that
  holds the crop. That is enough to score it against lesion boxes, since a
  map is 0 outside the crop anyway; an overlay needs the real shape.
  """
  if source_shapes is None:
    source_shapes = [(int(box[2]), int(box[3])) for box in crop_boxes]
  return [imaging.output_to_source(heatmap, box, bool(flip), shape)
          for heatmap, box, flip, shape in zip(heatmaps, crop_boxes, flipped, source_shapes)]


def box_to_output(box, crop_box, flipped: bool, size: int) -> np.ndarray:
  """A box [y0, x0, y1, x1) in source pixels mapped into the stored frame at `size` (for drawing)."""
  result = imaging.Preprocessed(image=None, crop_box=np.asarray(crop_box), flipped=bool(flipped))
  corners = np.array([imaging.source_to_output(y, x, result, size)
                      for y, x in ((box[0], box[1]), (box[2] - 1, box[3] - 1))])
  low, high = corners.min(axis=0), corners.max(axis=0)
  return np.array([low[0], low[1], high[0] + 1, high[1] + 1])


# --- Does it point at lesions? -------------------------------------------------------------------------


def circle_boxes(x, y, radius) -> np.ndarray:
  """Boxes [K, 4] (y0, x0, y1, x1) around circular findings (MIAS: centre column x, row y, radius).

  Findings without a position (negative x, y or radius, MIAS's "not given")
  get no box.
  """
  x, y, radius = (np.asarray(v, dtype=np.int64).reshape(-1) for v in (x, y, radius))
  known = (x >= 0) & (y >= 0) & (radius >= 0)
  x, y, radius = x[known], y[known], radius[known]
  return np.stack([y - radius, x - radius, y + radius + 1, x + radius + 1], axis=1).reshape(-1, 4)


def lesion_boxes(example: dict):
  """The lesion boxes [K, 4] in source pixels of one dataset example (numpy), or None if it records none.

  synthetic: its `lesion_box`. MIAS: boxes around the findings whose severity
  is the image's label (mdb144, malignant, also has a benign finding, which
  is not the lesion a malignant score should point at).
  """
  if "lesion_box" in example:
    return np.asarray(example["lesion_box"]).reshape(1, 4)
  if "findings" in example:
    findings = example["findings"]
    same = np.asarray(findings["severity"]) == example["label"]
    return circle_boxes(np.asarray(findings["x"])[same], np.asarray(findings["y"])[same],
                        np.asarray(findings["radius"])[same])
  return None


def as_boxes(lesion_boxes) -> np.ndarray:
  """One image's boxes as [K, 4], empty boxes (y1 <= y0 or x1 <= x0) left out."""
  boxes = np.asarray(lesion_boxes, dtype=np.int64).reshape(-1, 4)
  return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def _inside(shape, boxes) -> np.ndarray:
  """Mask of the pixels of a `shape` image inside any of `boxes` (clipped to the image)."""
  mask = np.zeros(shape, dtype=bool)
  for y0, x0, y1, x1 in boxes:
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
  return mask


def pointing_hits(heatmaps, lesion_boxes) -> np.ndarray:
  """[N] bool: whether each heatmap's maximum lies inside one of its image's lesion boxes.

  An all-zero heatmap has no maximum and misses. Ties go to the first
  maximum in row-major order.
  """
  hits = []
  for heatmap, boxes in zip(heatmaps, lesion_boxes):
    heatmap = np.asarray(heatmap)
    if not heatmap.max() > 0:
      hits.append(False)
      continue
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    hits.append(bool(_inside(heatmap.shape, as_boxes(boxes))[row, col]))
  return np.array(hits, dtype=bool)


def mass_inside(heatmaps, lesion_boxes) -> np.ndarray:
  """[N] float: each heatmap's share of its total (non-negative) mass inside its lesion boxes; 0 if all zero."""
  shares = []
  for heatmap, boxes in zip(heatmaps, lesion_boxes):
    heatmap = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    total = heatmap.sum()
    shares.append(float(heatmap[_inside(heatmap.shape, as_boxes(boxes))].sum() / total) if total > 0 else 0.0)
  return np.array(shares)


def localisation(heatmaps, lesion_boxes, patient_ids, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict:
  """Pointing game and heatmap mass inside the lesion boxes, with patient-bootstrap intervals.

  Args:
    heatmaps: per image, a 2-D heatmap in the frame of its boxes (source
      pixels, via `to_source`).
    lesion_boxes: per image, its lesion boxes [K, 4] (or one [4]); images
      with no non-empty box cannot be scored and are left out (counted).
    patient_ids: per image, the bootstrap unit.

  The caller picks the images (the pointing game is defined on malignant
  ones). Returns n (images scored), n_patients, n_without_lesion_box,
  n_blank (all-zero heatmaps, scored as misses and zero mass), and
  pointing_game / mass_inside, each {value, ci}.
  """
  heatmaps, lesion_boxes = list(heatmaps), list(lesion_boxes)
  patient_ids = np.asarray(patient_ids)
  if not len(heatmaps) == len(lesion_boxes) == len(patient_ids):
    raise ValueError(f"localisation: {len(heatmaps)} heatmaps, {len(lesion_boxes)} box lists and "
                     f"{len(patient_ids)} patient ids: one each per image")
  measures = [image_localisation(h, b) for h, b in zip(heatmaps, lesion_boxes)]
  return summarise_localisation(measures, patient_ids, n_resamples, seed, confidence)


def image_localisation(heatmap, lesion_boxes):
  """(hit, mass inside, blank) of one heatmap against its image's boxes; None when it has no non-empty box."""
  if not len(as_boxes(lesion_boxes)):
    return None
  return (bool(pointing_hits([heatmap], [lesion_boxes])[0]), float(mass_inside([heatmap], [lesion_boxes])[0]),
          not np.asarray(heatmap).max() > 0)


def summarise_localisation(measures, patient_ids, n_resamples: int = 1000, seed: int = 0,
                           confidence: float = 0.95) -> dict:
  """`localisation`'s result from per-image `image_localisation` measures (None: no box, left out and counted).

  Split from `localisation` so a pass over a split keeps three numbers per
  image, not its heatmap.
  """
  patient_ids = np.asarray(patient_ids)
  scored = np.array([m is not None for m in measures], dtype=bool)
  kept = [m for m in measures if m is not None]
  patient_ids = patient_ids[scored]
  result = {"n": int(scored.sum()), "n_patients": int(len(np.unique(patient_ids))),
            "n_without_lesion_box": int((~scored).sum()), "n_blank": int(sum(blank for _, _, blank in kept))}
  if not kept:
    nan = float("nan")
    return {**result, "pointing_game": {"value": nan, "ci": [nan, nan]},
            "mass_inside": {"value": nan, "ci": [nan, nan]}}
  weights = metrics.patient_resamples(patient_ids, n_resamples, seed)
  totals = weights.sum(axis=1)
  for name, values in (("pointing_game", np.array([hit for hit, _, _ in kept], dtype=float)),
                       ("mass_inside", np.array([mass for _, mass, _ in kept], dtype=float))):
    result[name] = {"value": float(values.mean()),
                    "ci": metrics.percentile_interval(weights @ values / totals, confidence)}
  result["bootstrap"] = {"unit": "patient", "n_resamples": n_resamples, "seed": seed}
  return result


def localisation_by_class(measures, labels, patient_ids, n_resamples: int = 1000, seed: int = 0) -> dict:
  """class name -> `summarise_localisation` of that class's images (binary: benign, malignant)."""
  labels, patient_ids = np.asarray(labels), np.asarray(patient_ids)
  result = {}
  for label, name in enumerate(metrics.BINARY_NAMES):
    chosen = np.flatnonzero(labels == label)
    result[name] = summarise_localisation([measures[i] for i in chosen], patient_ids[chosen], n_resamples, seed)
  return result


# Features a dataset records lesion locations in (`lesion_boxes` reads them).
LOCATION_FEATURES = ("lesion_box", "findings")


@dataclasses.dataclass
class SplitSaliency:
  """What one Grad-CAM pass over a split keeps: three numbers per image and the grid's cases, no other map."""
  measures: list  # per image, `image_localisation` (None: no lesion box)
  cases: dict  # index -> (model input [S, S, 1], heatmap [S, S], lesion boxes [K, 4] in the input frame)


def explain_split(model: keras.Model, examples, batch_size: int, keep=()) -> SplitSaliency:
  """Grad-CAM over a split's examples, one `grad_cam` call per batch of `batch_size`.

  Args:
    examples: numpy dicts in split order, each with "image" (the model's
      input), "crop_box", "flipped", "label" and the dataset's
      LOCATION_FEATURES (`data.eval_examples`).
    keep: indices whose input, heatmap and boxes are kept (the grid's cases).

  Memory stays flat in the split's size: each heatmap is mapped to source
  pixels, scored against its lesion boxes and dropped.
  """
  keep = set(int(i) for i in keep)
  result = SplitSaliency([], {})
  batch = []

  def flush():
    if not batch:
      return
    maps = grad_cam(model, np.stack([example["image"] for example in batch]), batch_size=len(batch), target_class=1)
    for example, heatmap in zip(batch, maps):
      index = len(result.measures)
      boxes = lesion_boxes(example)
      measure = None
      if boxes is not None and len(as_boxes(boxes)):
        source = to_source([heatmap], [example["crop_box"]], [example["flipped"]])[0]
        measure = image_localisation(source, boxes)
      result.measures.append(measure)
      if index in keep:
        size = heatmap.shape[0]
        drawn = np.array([box_to_output(box, example["crop_box"], example["flipped"], size)
                          for box in as_boxes(boxes if boxes is not None else np.zeros((0, 4)))]).reshape(-1, 4)
        result.cases[index] = (example["image"], heatmap, drawn)
    batch.clear()

  for example in examples:
    batch.append(example)
    if len(batch) == batch_size:
      flush()
  flush()
  return result
