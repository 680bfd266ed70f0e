"""Training-image augmentation: random up-down flips and affine warps, on whole uint8 batches.

Used only on the training stream (`data.train_batches`) and the feature
cache's augmented views: nothing augmented reaches validation or test.
"""
import dataclasses
import math

import tensorflow as tf

_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """Random training-image changes; a zero strength turns that change off.

  Only up-down flips: every stored image has the chest wall on the left, and
  a left-right flip would show the model an orientation no test image has.
  """
  flip: bool = True
  rotation: float = 10.0  # largest rotation, degrees
  zoom: float = 0.1  # largest zoom in or out, fraction
  shift: float = 0.05  # largest shift, fraction of the side

  @classmethod
  def none(cls) -> "Augmentation":
    return cls(flip=False, rotation=0.0, zoom=0.0, shift=0.0)

  @property
  def active(self) -> bool:
    return self.flip or bool(self.rotation or self.zoom or self.shift)


def augment(images: tf.Tensor, seed: tf.Tensor, augmentation: Augmentation) -> tf.Tensor:
  """One random flip and affine warp (rotation, zoom, shift) per image of a uint8 batch.

  Stateless random ops driven by `seed` (a [2] int tensor), so a run is
  repeatable; the warp is one projective-transform op over the whole batch,
  much cheaper on CPU than per-image Keras random layers, and it keeps uint8.
  Areas moved in from outside the image are black, like the background.
  """
  batch = tf.shape(images)[0]
  size = tf.cast(tf.shape(images)[1], tf.float32)
  flip_seed, angle_seed, zoom_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
  if augmentation.flip:
    flip = tf.random.stateless_uniform([batch], flip_seed) < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[1]), images)
  if not (augmentation.rotation or augmentation.zoom or augmentation.shift):
    return images
  angle = tf.random.stateless_uniform([batch], angle_seed, -1, 1) * augmentation.rotation * math.pi / 180
  scale = 1 + tf.random.stateless_uniform([batch], zoom_seed, -1, 1) * augmentation.zoom
  shift = tf.random.stateless_uniform([batch, 2], shift_seed, -1, 1) * augmentation.shift * size
  centre = (size - 1) / 2
  # Output pixel (x, y) samples the input at centre + R(angle) (p - centre) / scale - shift.
  cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
  a2 = centre - cos * centre + sin * centre - shift[:, 0]
  b2 = centre - sin * centre - cos * centre - shift[:, 1]
  zeros = tf.zeros_like(cos)
  transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
  return tf.raw_ops.ImageProjectiveTransformV3(
      images=images, transforms=transforms, output_shape=tf.shape(images)[1:3], fill_value=0.0,
      interpolation="BILINEAR", fill_mode="CONSTANT")


def augmented(batches: tf.data.Dataset, augmentation: Augmentation, seed: int) -> tf.data.Dataset:
  """(images, labels) batches with their images augmented, one stateless seed per batch from `seed`.

  The same seed gives the same augmentations, which is what lets the feature
  cache store a fixed set of augmented views.
  """
  if not augmentation.active:
    return batches
  seeds = tf.data.Dataset.random(seed=seed).batch(2)
  return tf.data.Dataset.zip(batches, seeds).map(
      lambda batch, s: (augment(batch[0], s, augmentation), batch[1]), num_parallel_calls=_AUTOTUNE)
