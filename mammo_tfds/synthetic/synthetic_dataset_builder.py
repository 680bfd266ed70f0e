"""Built-in synthetic mammograms: run everything before downloading anything.

Patients, breasts, labels and pixels are all drawn from one seed, so every
machine builds the same dataset. About one benign breast to three malignant,
like CMMD; two views (CC, MLO) per breast; some patients have both breasts.
"""
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import configs, features, imaging, phantom, splits

SEED = 20261126
MALIGNANT_SHARE = 0.75
BOTH_BREASTS_SHARE = 0.3


@dataclasses.dataclass(eq=False)
class SyntheticConfig(configs.MammoConfig):
  num_patients: int = 120
  source_shape: tuple = (600, 500)  # drawn film size (rows, cols) before preprocessing


def plan(num_patients: int, seed: int = SEED):
  """Every (patient, laterality, label, lesion) of the dataset, decided up front."""
  rng = np.random.default_rng(seed)
  breasts = []
  for index in range(num_patients):
    patient = f"S-{index:04d}"
    sides = ("L", "R") if rng.random() < BOTH_BREASTS_SHARE else (str(rng.choice(["L", "R"])),)
    for side in sides:
      breasts.append(dict(
          patient_id=patient, laterality=side, malignant=bool(rng.random() < MALIGNANT_SHARE),
          lesion=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.25, 0.6)), float(rng.uniform(0.035, 0.07))),
          seed=int(rng.integers(2**31))))
  return breasts


class Builder(tfds.core.GeneratorBasedBuilder):
  """Synthetic mammogram-like images with benign and malignant masses."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      SyntheticConfig(name="600", description="120 patients, stored 600x600."),
      SyntheticConfig(name="tiny", image_size=64, num_patients=40, source_shape=(180, 150),
                      description="40 patients at 64x64: for tests and smoke runs."),
  ]
  DEFAULT_CONFIG_NAME = "600"
  builder_config_cls = SyntheticConfig

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features.common(self.builder_config.image_size)),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    breasts = plan(self.builder_config.num_patients)
    patient_label = {}
    for breast in breasts:
      patient_label[breast["patient_id"]] = max(patient_label.get(breast["patient_id"], 0), int(breast["malignant"]))
    assignment = splits.assign(patient_label, seed=SEED)
    return {
        split: self._generate_examples([b for b in breasts if assignment[b["patient_id"]] == split])
        for split in splits.SPLITS
    }

  def _generate_examples(self, breasts):
    height, width = self.builder_config.source_shape
    size = self.builder_config.image_size
    for breast in breasts:
      rng = np.random.default_rng(breast["seed"])
      for view in features.VIEWS:
        pixels = phantom.draw(rng, height, width, breast["malignant"], breast["laterality"], view,
                              lesion=breast["lesion"])
        key = f"{breast['patient_id']}_{breast['laterality']}_{view}"
        result = imaging.preprocess(pixels, size, source=key)
        yield key, {
            "image": features.encode_png(result.image, size),
            "label": int(breast["malignant"]),
            "patient_id": breast["patient_id"],
            "laterality": breast["laterality"],
            "view": view,
            "source": f"synthetic/{key}",
            "crop_box": result.crop_box,
        }
