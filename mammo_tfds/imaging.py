"""Source pixels -> the stored image: crop to the breast, orient, pad, resize.

Lives once and is used both when a dataset is built and when a new source
file is predicted on, so a model never sees preprocessing it was not trained
with.

The crop is the bounding box of the largest connected region above a LOW
threshold. A low threshold matters: at an Otsu-like level (50-107 on MIAS
films) faint skin and the axillary tail fall below it and lesions near the
skin line (mini-MIAS mdb212, mdb214) are cut off. Film labels and tape are
bright but separate from the breast, so "largest region" drops them. The box
is never eroded or shaved: lesions sit 2-10 px from the chest-wall edge on
some films (mdb072, mdb110, mdb126).
"""
import dataclasses

import numpy as np
from PIL import Image
from scipy import ndimage

DEFAULT_SIZE = 600
# Pixel value (0-255) above which a pixel may be breast. <= ~36 keeps every
# mini-MIAS lesion inside the crop; noise in film background is below ~12.
BREAST_THRESHOLD = 20
# Below this share of pixels above the threshold the image is called blank.
MIN_FOREGROUND_FRACTION = 0.002
# The mask is labelled on a copy whose longer side is at most this, which
# keeps connected-component labelling cheap on 2294x1914 CMMD images.
_MASK_SIDE = 512


class BlankImageError(ValueError):
  """The image has (almost) nothing above the breast threshold."""


@dataclasses.dataclass(frozen=True)
class Preprocessed:
  image: np.ndarray  # (size, size, 1) uint8
  crop_box: np.ndarray  # int32 [y0, x0, y1, x1] in source pixels, end-exclusive
  flipped: bool  # mirrored left-right after cropping, to put the chest wall left


def breast_box(pixels: np.ndarray, source: str = "<array>",
               threshold: int = BREAST_THRESHOLD) -> np.ndarray:
  """Bounding box [y0, x0, y1, x1) of the largest bright region.

  The region is found on a max-pooled mask, so the box can only be larger than
  the exact one, never smaller: a crop never loses breast tissue to the
  downscaling.
  """
  if pixels.ndim != 2 or pixels.size == 0:
    raise ValueError(f"{source}: expected a 2-D grayscale image, got shape {pixels.shape}")
  height, width = pixels.shape
  mask = pixels > threshold
  if mask.mean() < MIN_FOREGROUND_FRACTION:
    raise BlankImageError(
        f"{source}: image is blank or nearly blank ({mask.mean():.3%} of pixels above "
        f"{threshold}; max value {int(pixels.max())})")
  factor = max(1, -(-max(height, width) // _MASK_SIDE))
  if factor > 1:
    pad_h, pad_w = (-height) % factor, (-width) % factor
    padded = np.pad(mask, ((0, pad_h), (0, pad_w)))
    mask = padded.reshape(padded.shape[0] // factor, factor,
                          padded.shape[1] // factor, factor).any(axis=(1, 3))
  labels, count = ndimage.label(mask)
  sizes = np.bincount(labels.ravel(), minlength=count + 1)
  sizes[0] = 0
  rows, cols = np.nonzero(labels == int(np.argmax(sizes)))
  return np.array([
      rows.min() * factor, cols.min() * factor,
      min(height, (rows.max() + 1) * factor), min(width, (cols.max() + 1) * factor),
  ], dtype=np.int32)


def chest_wall_is_right(crop: np.ndarray, threshold: int = BREAST_THRESHOLD) -> bool:
  """True if the chest wall is on the right of a cropped breast.

  The chest wall side is the one where breast tissue runs along the whole
  edge; the nipple side tapers off into background. Compare how much of the
  outer tenth of columns on each side is tissue.
  """
  band = max(1, crop.shape[1] // 10)
  left = (crop[:, :band] > threshold).mean()
  right = (crop[:, -band:] > threshold).mean()
  return bool(right > left)


def pad_square(crop: np.ndarray) -> np.ndarray:
  """Pads with black to a square: content against the left (chest wall), centred vertically."""
  height, width = crop.shape
  side = max(height, width)
  top = (side - height) // 2
  return np.pad(crop, ((top, side - height - top), (0, side - width)))


def preprocess(pixels: np.ndarray, size: int = DEFAULT_SIZE, source: str = "<array>") -> Preprocessed:
  """Turns 8-bit source pixels into the stored (size, size, 1) image.

  Args:
    pixels: 2-D uint8 array as `mammo_tfds.sources` returns it.
    size: side of the output square.
    source: file name for error messages.

  Raises:
    BlankImageError: nothing in the image looks like a breast.
  """
  if pixels.dtype != np.uint8:
    raise ValueError(f"{source}: expected uint8 pixels, got {pixels.dtype}")
  box = breast_box(pixels, source)
  y0, x0, y1, x1 = box
  crop = pixels[y0:y1, x0:x1]
  flipped = chest_wall_is_right(crop)
  if flipped:
    crop = crop[:, ::-1]
  square = pad_square(np.ascontiguousarray(crop))
  resized = Image.fromarray(square).resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
  return Preprocessed(np.asarray(resized, dtype=np.uint8)[:, :, None], box, flipped)


def source_to_output(y: float, x: float, result: Preprocessed, size: int = DEFAULT_SIZE):
  """Maps a point in source pixels (row y, column x) to the stored image.

  Used to carry lesion coordinates into the stored frame and to check, in
  tests, that preprocessing keeps a lesion where it was.
  """
  y0, x0, y1, x1 = (int(v) for v in result.crop_box)
  height, width = y1 - y0, x1 - x0
  side = max(height, width)
  row = y - y0 + (side - height) // 2
  col = x - x0
  if result.flipped:
    col = width - 1 - col
  scale = size / side
  return row * scale, col * scale
