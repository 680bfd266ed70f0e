"""The feature schema every mammo dataset shares.

The trainer is dataset-agnostic because every builder yields at least these
features; each builder adds its own metadata next to them.
"""
import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import imaging

LABELS = ("benign", "malignant")
LATERALITIES = ("L", "R")
VIEWS = ("CC", "MLO")


def common(image_size: int, label_names=LABELS) -> dict:
  """Features shared by all datasets, as a dict to merge a dataset's own into.

  Args:
    image_size: side of the stored square image.
    label_names: the class names of `label` (benign / malignant unless the
      dataset's task is a different one, e.g. MIAS breast density).
  """
  return {
      "image": tfds.features.Image(
          shape=(image_size, image_size, 1), dtype=np.uint8, encoding_format="png",
          doc="Cropped to the breast, chest wall on the left, padded square, resized."),
      "label": tfds.features.ClassLabel(names=list(label_names)),
      "patient_id": tfds.features.Text(doc="The split unit: no patient is in two splits."),
      "laterality": tfds.features.ClassLabel(names=list(LATERALITIES)),
      "view": tfds.features.ClassLabel(names=list(VIEWS)),
      "source": tfds.features.Text(doc="Source file path relative to the manual dir."),
      "crop_box": tfds.features.Tensor(
          shape=(4,), dtype=np.int32,
          doc="y0, x0, y1, x1 of the crop in source pixels (y1, x1 exclusive)."),
      "flipped": tfds.features.Scalar(
          dtype=np.bool_, doc="Mirrored left-right after cropping, to put the chest wall on the left."),
  }



def example(result: imaging.Preprocessed, image_size: int, *, label: int, patient_id: str, laterality: str,
            view: str, source: str, **metadata) -> dict:
  """One example of the common schema from a preprocessed image, plus the dataset's own metadata.

  Every builder yields through this, so the shared features are filled the
  same way everywhere (the image encoded and checked, crop box and flip from
  the preprocessing that made it).
  """
  return {
      "image": imaging.encode_png(result.image, image_size),
      "label": label,
      "patient_id": patient_id,
      "laterality": laterality,
      "view": view,
      "source": source,
      "crop_box": result.crop_box,
      "flipped": result.flipped,
      **metadata,
  }
