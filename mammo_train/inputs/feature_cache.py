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
dataset name / config / version, backbone weights (hashed), image size,
precision, augmentation, number of views, seed and the share of the
training split (`cache_key`): a worker of a cluster computes and trains on
the features of its own share only (`data.Share`), and the validation
features whole.
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

from mammo_train.inputs import data

KEY_FILE = "key.json"


def weights_digest(extractor: keras.Model) -> str:
  digest = hashlib.sha256()
  for weight in extractor.weights:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
  return digest.hexdigest()


def cache_key(builder, extractor: keras.Model, image_size: int, augmentation: data.Augmentation,
              views: int, seed: int, share: data.Share = data.WHOLE) -> dict:
  """Everything the cached features depend on."""
  return {
      "dataset": builder.info.full_name,  # name/config/version
      "backbone": extractor.name,
      "weights_sha256": weights_digest(extractor),
      "image_size": image_size,
      "precision": keras.mixed_precision.global_policy().name,
      "augmentation": dataclasses.asdict(augmentation),
      "views": views,
      "seed": seed,
      "share": [share.index, share.count],
  }


def _folder(root: str, key: dict) -> str:
  return os.path.join(root, hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16])


def _features(run, batches) -> tuple:
  """Features and labels of a stream of (images, labels) batches, batch by batch."""
  features, labels = [], []
  for images, batch_labels in batches:
    features.append(np.asarray(run(images), dtype=np.float32))
    labels.append(batch_labels.numpy())
  return np.concatenate(features), np.concatenate(labels)


def compute(root: str, builder, extractor, image_size: int, batch_size: int,
            augmentation: data.Augmentation, views: int, seed: int, share: data.Share = data.WHOLE) -> str:
  """The cache folder for this key, computed now unless a complete one exists.

  Written to a temporary folder and renamed when complete, so a killed run
  never leaves a cache that looks complete.
  """
  views = views if augmentation.active else 1  # unaugmented views would all be the same
  key = cache_key(builder, extractor, image_size, augmentation, views, seed, share)
  folder = _folder(root, key)
  if os.path.exists(os.path.join(folder, KEY_FILE)):
    logging.info("feature cache: reusing %s", folder)
    return folder
  partial = folder + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  os.makedirs(partial)
  # One traced graph for every batch: called eagerly, ResNet50 at 600 px was
  # about 2x slower per image than inside fit.
  run = tf.function(lambda images: extractor(images, training=False), reduce_retracing=True)
  for view in range(views):
    # The training split (this share of it) in file order, augmented with seeds fixed per view and batch.
    stream = data.augmented(data.eval_batches(builder, "train", image_size, batch_size, share), augmentation,
                            share.seed(seed) * 1000 + view)
    features, labels = _features(run, stream)
    np.save(os.path.join(partial, f"train_view{view}.npy"), features)
  np.save(os.path.join(partial, "train_labels.npy"), labels)  # file order: the same for every view
  logging.info("feature cache: share %d of %d of the train split: %d images", share.index + 1, share.count,
               len(labels))
  features, labels = _features(run, data.eval_batches(builder, "validation", image_size, batch_size))
  np.save(os.path.join(partial, "validation.npy"), features)
  np.save(os.path.join(partial, "validation_labels.npy"), labels)
  with open(os.path.join(partial, KEY_FILE), "w") as f:
    json.dump(key, f, indent=2)
  shutil.rmtree(folder, ignore_errors=True)
  os.rename(partial, folder)
  logging.info("feature cache: wrote %s", folder)
  return folder


def train_batches(folder: str, classes: int, batch_size: int, oversample: bool, seed: int,
                  class_weight: dict | None = None) -> tf.data.Dataset:
  """Endless (features, targets[, weights]) batches: each draw picks an image, then one of its views.

  The images are those of the share the folder was computed for, drawn with
  that share's seed; `batch_size` is this pipeline's (`data.train_batches`).
  """
  with open(os.path.join(folder, KEY_FILE)) as f:
    key = json.load(f)
  views, seed = key["views"], data.Share(*key["share"]).seed(seed)
  stacked = np.stack([np.load(os.path.join(folder, f"train_view{v}.npy")) for v in range(views)], axis=1)
  labels = np.load(os.path.join(folder, "train_labels.npy"))
  images = data.endless(tf.data.Dataset.from_tensor_slices((stacked, labels)),
                        np.bincount(labels, minlength=classes), oversample, seed)
  pick = tf.data.Dataset.random(seed=seed)
  return (tf.data.Dataset.zip(images, pick)
          .map(lambda example, r: (example[0][r % views], example[1]))
          .batch(batch_size, drop_remainder=True)
          .apply(lambda batches: data.fit_batches(batches, classes, class_weight))
          .prefetch(tf.data.AUTOTUNE))


def validation_batches(folder: str, classes: int, global_batch_size: int) -> tf.data.Dataset:
  features = np.load(os.path.join(folder, "validation.npy"))
  labels = np.load(os.path.join(folder, "validation_labels.npy"))
  return data.fit_batches(tf.data.Dataset.from_tensor_slices((features, labels)).batch(global_batch_size), classes)
