"""Frozen-backbone training on cached backbone features.

A frozen backbone's output for an image depends only on the image and its
augmentation, yet a plain `model.fit` recomputes it every epoch: that is what
made the original 60-epoch frozen ResNet50 run take 45 hours. Here the
backbone runs once per training image for a fixed number of augmented views
(and once per validation image, unaugmented), the features are stored in the
workdir, and only the head (dropout + output) trains, epoch after epoch, on
views drawn from the cache. Oversampling draws minority images more often, so
their copies are views from the cache too.

The head shares its layers with the full model, so training the head trains
the model, which is what is checkpointed and evaluated: nothing downstream
knows the cache exists.

A cache is reused on a rerun only when everything it depends on is the same:
dataset name / config / version, the splits read, backbone weights (hashed),
image size, precision, augmentation, number of views, seed and the share of
the training split (`cache_key`).

Where the training or validation part is a `data.Selection` (a fold of
cross-validation), the cache is computed over its whole splits, with each
row's patient, and the selection only chooses rows: every fold of a
cross-validation shares one cache of the development data. A worker of a
cluster computes and trains on the features of its own share of the
training part only (`data.Share`), and the validation features whole.
"""
import dataclasses
import hashlib
import json
import os
import shutil

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from mammo_train.inference import runtimes
from mammo_train.inputs import augmentations, data

KEY_FILE = "key.json"
PARTS = ("train", "validation")  # the parts of a run's Partition the cache holds


def _whole(split):
  """What the cache is computed over for `split`: a Selection's splits with every patient."""
  if isinstance(split, data.Selection):
    return data.Selection(tuple(split.splits), None, "+".join(split.splits))
  return split


def _rows(folder: str, part: str, split) -> np.ndarray | slice:
  """The cached rows of `part` that `split` selects (all of them for a plain split name)."""
  if not isinstance(split, data.Selection) or split.patients is None:
    return slice(None)
  return np.isin(np.load(os.path.join(folder, f"{part}_patients.npy")), sorted(split.patients))


def cache_key(builder, extractor: keras.Model, image_size: int, augmentation: augmentations.Augmentation,
              views: int, seed: int, partition: data.Partition = data.Partition(),
              share: data.Share = data.WHOLE, runtime: str = "keras") -> dict:
  """Everything the cached features depend on.

  Not the runtime's name: float32 runtimes give features that agree to
  `runtimes.TOLERANCE`, so a cache one computed serves them all. A bfloat16
  runtime's features differ by its rounding, so they get a key (and folder)
  of their own; caches computed before it existed keep theirs.
  """
  key = {
      "dataset": builder.info.full_name,  # name/config/version
      "splits": {part: data.split_names(builder, getattr(partition, part)) for part in PARTS},
      "backbone": extractor.name,
      "weights_sha256": runtimes.weights_digest(extractor),
      "image_size": image_size,
      "precision": keras.mixed_precision.global_policy().name,
      "augmentation": dataclasses.asdict(augmentation),
      "views": views,
      "seed": seed,
      "share": [share.index, share.count],
  }
  if runtime in runtimes.BFLOAT16:
    key["backbone_compute"] = "bfloat16"
  return key


def _folder(root: str, key: dict) -> str:
  return os.path.join(root, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16])


def _features(run, batches) -> tuple:
  """Features and labels of a stream of (images, labels) batches, batch by batch."""
  features, labels = [], []
  for images, batch_labels in batches:
    features.append(run(images))
    labels.append(batch_labels.numpy())
  return np.concatenate(features), np.concatenate(labels)


def compute(root: str, builder, extractor, image_size: int, batch_size: int,
            augmentation: augmentations.Augmentation, views: int, seed: int, runtime: str = "keras",
            partition: data.Partition = data.Partition(), share: data.Share = data.WHOLE) -> str:
  """The cache folder for this key, computed now unless a complete one exists.

  Written to a temporary folder and renamed when complete, so a killed run
  never leaves a cache that looks complete. The backbone runs on `runtime`
  (resolved, `runtimes.resolve`), converted once into root/runtimes and
  checked against Keras on the first batch.
  """
  views = views if augmentation.active else 1  # unaugmented views would all be the same
  key = cache_key(builder, extractor, image_size, augmentation, views, seed, partition, share, runtime)
  folder = _folder(root, key)
  if os.path.exists(os.path.join(folder, KEY_FILE)):
    logging.info("feature cache: reusing %s", folder)
    return folder
  partial = folder + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  run = runtimes.checked_forward(extractor, runtime, os.path.join(root, "runtimes"))
  train, validation = _whole(partition.train), _whole(partition.validation)
  for view in range(views):
    # The training part (this share of it) in file order, augmented with seeds fixed per view and batch.
    stream = augmentations.augmented(data.eval_batches(builder, train, image_size, batch_size, share), augmentation,
                            share.seed(seed) * 1000 + view)
    features, labels = _features(run, stream)
    np.save(os.path.join(partial, f"train_view{view}.npy"), features)
  np.save(os.path.join(partial, "train_labels.npy"), labels)  # file order: the same for every view
  logging.info("feature cache: share %d of %d of the %s: %d images", share.index + 1, share.count,
               data.split_label(train), len(labels))
  features, labels = _features(run, data.eval_batches(builder, validation, image_size, batch_size))
  np.save(os.path.join(partial, "validation.npy"), features)
  np.save(os.path.join(partial, "validation_labels.npy"), labels)
  for part, split, part_share in (("train", train, share), ("validation", validation, data.WHOLE)):
    np.save(os.path.join(partial, f"{part}_patients.npy"),
            data.split_metadata(builder, split, share=part_share)["patient_id"])
  with open(os.path.join(partial, KEY_FILE), "w") as f:
    json.dump({**key, "runtime": runtime, "runtime_difference": run.difference}, f, indent=2)
  shutil.rmtree(folder, ignore_errors=True)
  os.rename(partial, folder)
  logging.info("feature cache: wrote %s", folder)
  return folder


def train_batches(folder: str, classes: int, batch_size: int, oversample: bool, seed: int,
                  class_weight: dict | None = None, split="train") -> tf.data.Dataset:
  """Endless (features, targets[, weights]) batches of `split`'s rows: each draw picks an image, then one of
  its views.

  The images are those of the share the folder was computed for, drawn with
  that share's seed; `batch_size` is this pipeline's (`data.train_batches`).
  """
  with open(os.path.join(folder, KEY_FILE)) as f:
    key = json.load(f)
  views, seed = key["views"], data.Share(*key["share"]).seed(seed)
  rows = _rows(folder, "train", split)
  stacked = np.stack([np.load(os.path.join(folder, f"train_view{v}.npy"))[rows] for v in range(views)], axis=1)
  labels = np.load(os.path.join(folder, "train_labels.npy"))[rows]
  images = data.endless(tf.data.Dataset.from_tensor_slices((stacked, labels)),
                        np.bincount(labels, minlength=classes), oversample, seed)
  pick = tf.data.Dataset.random(seed=seed)
  return (tf.data.Dataset.zip(images, pick)
          .map(lambda example, r: (example[0][r % views], example[1]))
          .batch(batch_size, drop_remainder=True)
          .apply(lambda batches: data.fit_batches(batches, classes, class_weight))
          .prefetch(tf.data.AUTOTUNE))


def validation_batches(folder: str, classes: int, global_batch_size: int, split="validation") -> tf.data.Dataset:
  rows = _rows(folder, "validation", split)
  features = np.load(os.path.join(folder, "validation.npy"))[rows]
  labels = np.load(os.path.join(folder, "validation_labels.npy"))[rows]
  return data.fit_batches(tf.data.Dataset.from_tensor_slices((features, labels)).batch(global_batch_size), classes)
