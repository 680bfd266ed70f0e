"""TFDS's own builder test for mini-MIAS, on the made-up archive in dummy_data/.

dummy_data/all-mias.tar.gz is written by tools/write_fake_mias.py: 18 films of
9 made-up patients, 6 of them abnormal (2 benign, 4 malignant).
"""
import tensorflow_datasets as tfds

from mammo_tfds.mias import mias_dataset_builder


class AbnormalTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = mias_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["abnormal"]
  SKIP_CHECKSUMS = True
  SPLITS = {"train": 4, "validation": 1, "test": 1}


class DensityTest(AbnormalTest):
  BUILDER_CONFIG_NAMES_TO_TEST = ["density"]
  SPLITS = {"train": 12, "validation": 4, "test": 2}


if __name__ == "__main__":
  tfds.testing.test_main()
