"""Builds the manifest dataset from dummy_data/: 6 patients in mixed formats, written by tools/write_manifest.py.

dummy_data/ holds 12 images (DICOM, 16-bit PNG, 8-bit PNG, JPEG in turn; the
last patient's CC image duplicates the first patient's pixels) and two bad
rows (a missing file, a corrupt PNG), which are skipped. Rewrite it with:

  python tools/write_manifest.py mammo_tfds/manifest/dummy_data --patients 6 --height 80 --width 64 --bad-rows
"""
import tensorflow_datasets as tfds

from mammo_tfds.manifest import manifest_dataset_builder


class ManifestTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = manifest_dataset_builder.Builder
  SPLITS = {"train": 8, "validation": 4}  # 6 patients: the test share rounds to none


if __name__ == "__main__":
  tfds.testing.test_main()
