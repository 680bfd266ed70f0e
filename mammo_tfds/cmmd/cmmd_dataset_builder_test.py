"""Builds CMMD from dummy_data/: a tree written by tools/write_cmmd.py at 80x64.

dummy_data/ holds 10 patients (26 images: two of a breast with no sheet row,
a 16-bit series D1-0002, a MONOCHROME1 series D1-0003, and D2-0001 a pixel
copy of D1-0001). Rewrite it with:

  python tools/write_cmmd.py mammo_tfds/cmmd/dummy_data --patients 10 \\
      --height 80 --width 64 --sixteen-bit D1-0002 --monochrome1 D1-0003 \\
      --duplicate D1-0001 D2-0001
"""
import tensorflow_datasets as tfds

from mammo_tfds.cmmd import cmmd_dataset_builder


class CmmdTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = cmmd_dataset_builder.Builder
  SPLITS = {"train": 20, "validation": 2, "test": 2}  # the two unlabelled images are left out


if __name__ == "__main__":
  tfds.testing.test_main()
