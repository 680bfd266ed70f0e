"""Built-in synthetic mammograms: run everything before downloading anything.

Patients, breasts, labels and pixels are all drawn from one seed, so every
machine builds the same dataset. About one benign breast to three malignant,
like CMMD; two views (CC, MLO) per breast; some patients have both breasts.
"""
import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import builder_configs, features, generation, phantom, splits
from mammo_tfds.synthetic import examples

# Subgroups the evaluation reports (schema: mammo_train/evaluation/subgroups.py; README
# "Subgroups and possible shortcuts"): the images carry no non-image cue.
SUBGROUPS = {"features": [{"name": "laterality"}, {"name": "view"}], "shortcuts": []}


@dataclasses.dataclass(eq=False)
class SyntheticConfig(builder_configs.MammoConfig):
  num_patients: int = 120
  source_shape: tuple = (600, 500)  # drawn film size (rows, cols) before preprocessing


class Builder(generation.ParallelBuilder):
  """Synthetic mammogram-like images with benign and malignant masses."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "First release.",
      "1.1.0": "Adds lesion_box: where the lesion was drawn, in source pixels. Images unchanged.",
  }
  BUILDER_CONFIGS = [
      SyntheticConfig(name="600", description="120 patients, stored 600x600."),
      SyntheticConfig(name="tiny", image_size=64, num_patients=40, source_shape=(180, 150),
                      description="40 patients at 64x64: for tests and smoke runs."),
  ]
  DEFAULT_CONFIG_NAME = "600"
  builder_config_cls = SyntheticConfig

  def _info(self) -> tfds.core.DatasetInfo:
    return self._mammo_info({
        **features.common(self.builder_config.image_size),
        "lesion_box": tfds.features.Tensor(
            shape=(4,), dtype=np.int32,
            doc=f"y0, x0, y1, x1 (y1, x1 exclusive) in source pixels, the frame of crop_box, of the "
                f"breast pixels where the lesion adds at least {phantom.LESION_BOX_LEVEL:.0%} of its peak "
                f"contrast; {list(phantom.NO_LESION_BOX)} for an image without a lesion (none here)."),
    }, SUBGROUPS)

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    breasts = examples.plan(self.builder_config.num_patients)
    patient_label = {}
    for breast in breasts:
      patient_label[breast["patient_id"]] = max(patient_label.get(breast["patient_id"], 0), int(breast["malignant"]))
    assignment = splits.assign_patients(patient_label, seed=examples.SEED)
    return {
        split: self._generate_examples([b for b in breasts if assignment[b["patient_id"]] == split], split)
        for split in splits.SPLITS
    }

  def _item_fn(self):
    return functools.partial(examples.breast_examples, image_size=self.builder_config.image_size,
                             source_shape=tuple(self.builder_config.source_shape))
