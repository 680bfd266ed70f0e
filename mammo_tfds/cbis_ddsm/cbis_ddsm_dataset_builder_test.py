"""Builds CBIS-DDSM from dummy_data/: a TCIA classic tree written by tools/write_cbis.py at 100x60.

dummy_data/ holds 4 patients, 12 films (16 full-mammogram series: patient
P_00001's breasts have a mass and a calcification, so those films are in both
CSVs; P_00004 is in both official sets). Rewrite it with:

  python tools/write_cbis.py mammo_tfds/cbis_ddsm/dummy_data --patients 4 --layout classic \\
      --seed 1 --height 100 --width 60
"""
import tensorflow_datasets as tfds

from mammo_tfds.cbis_ddsm import cbis_ddsm_dataset_builder


class CbisDdsmTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cbis_ddsm_dataset_builder.Builder
  SPLITS = {"train": 8, "test": 4}  # one example per film; too few patients for a validation split


if __name__ == "__main__":
  tfds.testing.test_main()
