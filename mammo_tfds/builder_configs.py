"""Builder configs shared by the mammo datasets: the stored image size (and a task).

Each builder lists only its 600x600 configs, so a plain `tfds build` does not
build every size. Other sizes are built with a JSON config, which TFDS turns
into this class (each builder sets `builder_config_cls`):

  tfds build mammo_tfds/cmmd --config='{"name": "224", "image_size": 224}'
"""
import dataclasses

import tensorflow_datasets as tfds

from mammo_tfds import imaging


@dataclasses.dataclass(eq=False)
class MammoConfig(tfds.core.BuilderConfig):
  """A stored image size and, for datasets with more than one, the task.

  Attributes:
    image_size: side of the stored square image (600 by default; 224 and 1024
      can be built too, as separate configs).
    task: what `label` means (e.g. MIAS "abnormal" = benign / malignant of
      abnormal films, "density" = breast tissue).
  """
  image_size: int = imaging.DEFAULT_SIZE
  task: str = "malignancy"

