"""Builds RSNA Screening Mammography from dummy_data/: a tree written by tools/write_rsna.py at 2% of the real sizes.

dummy_data/ holds 8 training patients (35 train.csv rows, 35 files) and one
test patient: one row without its file, one file without its row, one file
whose ImageLaterality contradicts its row (3 skips), four rare views of which
AT is left out by design, both header variants (MONOCHROME1 SIGMOID, three
windows; MONOCHROME2 LOG sign +1), JPEG 2000 and uncompressed, and a patient
whose pixels copy another's. Rewrite it with:

  python tools/write_rsna.py mammo_tfds/rsna_screening/dummy_data --patients 8 --specials --scale 0.02
"""
import tensorflow_datasets as tfds

from mammo_tfds.rsna_screening import rsna_screening_dataset_builder


class RsnaScreeningTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = rsna_screening_dataset_builder.Builder
  SPLITS = {"train": 22, "validation": 7, "test": 3}  # 35 rows - 1 without file - 1 AT - 1 laterality mismatch


if __name__ == "__main__":
  tfds.testing.test_main()
