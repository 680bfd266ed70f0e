"""TFDS's own builder test for the synthetic dataset (its small `tiny` config)."""
import tensorflow_datasets as tfds

from mammo_tfds.synthetic import synthetic_dataset_builder


class SyntheticDatasetBuilderTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = synthetic_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  SKIP_CHECKSUMS = True
  SPLITS = {"train": 66, "validation": 12, "test": 16}


if __name__ == "__main__":
  tfds.testing.test_main()
