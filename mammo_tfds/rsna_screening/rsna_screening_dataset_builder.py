"""TFDS builder of the RSNA Screening Mammography Breast Cancer Detection set (Kaggle, 2022), one example per image.

How train.csv is read and joined to the files, how views and labels are
named, and which bad inputs stop the build or are skipped:
`mammo_tfds/rsna_screening/examples.py` and README.md.
"""
import functools

import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import features, generation, splits
from mammo_tfds.rsna_screening import examples

HOMEPAGE = "https://www.kaggle.com/competitions/rsna-breast-cancer-detection"
# Subgroups the evaluation reports and the possible shortcuts its metadata-only
# baseline is fitted on (schema: mammo_train/evaluation/subgroups.py; README "Subgroups
# and possible shortcuts"). Site and machine predict the label without a pixel
# (prevalence differs by machine); the model is compared with the baseline
# inside each site's and each machine's stratum.
SUBGROUPS = {
    "features": [{"name": "site_id"}, {"name": "machine_id"},
                 {"name": "age", "bands": [50, 60, 70], "missing": -1},
                 {"name": "density"}, {"name": "implant"}, {"name": "view"}, {"name": "laterality"}],
    "shortcuts": ["site_id", "machine_id", "age"],
}


class Builder(generation.ParallelBuilder):
  """RSNA screening mammograms labelled cancer / no cancer per image (= per breast)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  The RSNA Screening Mammography Breast Cancer Detection data are Kaggle
  competition data: accept the competition's rules at
  https://www.kaggle.com/competitions/rsna-breast-cancer-detection/rules, then
    kaggle competitions download -c rsna-breast-cancer-detection
    unzip rsna-breast-cancer-detection.zip -d <manual_dir>
  so that <manual_dir>/train.csv and <manual_dir>/train_images/<patient_id>/<image_id>.dcm
  exist (about 300 GB; the rules forbid redistributing them). Then:
    tfds build mammo_tfds/rsna_screening --manual_dir=<manual_dir>
  """

  def _info(self) -> tfds.core.DatasetInfo:
    schema = features.common(self.builder_config.image_size, examples.LABEL_NAMES)
    schema.update({
        "csv_view": tfds.features.Text(doc="The CSV's view (CC, MLO, ML, LM, LMO); `view` puts ML, LM, LMO in MLO."),
        "age": tfds.features.Scalar(np.int32, doc="Age in years; -1 if blank."),
        "biopsy": tfds.features.Scalar(np.int32, doc="1 if the breast was biopsied (after this exam)."),
        "invasive": tfds.features.Scalar(np.int32, doc="1 if the cancer was invasive; 0 otherwise or no cancer."),
        "birads": tfds.features.Scalar(np.int32, doc="BI-RADS 0 (recalled), 1 (normal), 2 (benign); -1 if blank."),
        "implant": tfds.features.Scalar(np.int32, doc="1 if the breast has an implant."),
        "density": tfds.features.Text(doc="BI-RADS density A-D, 'missing' if blank."),
        "site_id": tfds.features.Text(doc="The site (1 or 2). Prevalence differs: a possible shortcut."),
        "machine_id": tfds.features.Text(doc="The scanner. Prevalence differs by machine: a possible shortcut."),
        "difficult_negative_case": tfds.features.Scalar(np.bool_, doc="A negative the site found hard (biopsied)."),
    })
    return self._mammo_info(schema, SUBGROUPS, HOMEPAGE)

  def _split_generators(self, dl_manager):
    manual_dir = str(dl_manager.manual_dir)
    joined = examples.plan(manual_dir)
    for skip in joined.skips:
      self.skip_log.skip(skip.path, skip.reason, skip.detail)
    items, unreadable = examples.scan(manual_dir, joined.rows)
    for skip in unreadable:
      self.skip_log.skip(skip.path, skip.reason, skip.detail)
    duplicates = examples.duplicate_sets(items)
    split_of = examples.assign_splits(items, duplicates)
    self.info.metadata.update({
        "csv_rows": joined.csv_rows,
        "axillary_tail_views_left_out": len(joined.left_out_views),
        "test_images_not_built": len(joined.test_images),
        "identical_pixels": [[item.row.path for item in same] for same in duplicates],
    })
    for path, reason, message, fields in joined.left_out_by_design(split_of):
      self.audit.left_out(path, reason, message, **fields)
    self._manual_dir = manual_dir
    self._left_out = (len(joined.left_out_views), len(joined.test_images))
    return self._splits_of({split: [item for item in items if split_of[item.row.patient_id] == split]
                            for split in splits.SPLITS})

  def _item_fn(self):
    return functools.partial(examples.image_example, self._manual_dir, self.builder_config.image_size)

  def _summary_line(self) -> str:
    views, test = self._left_out
    return (f"{super()._summary_line()}; left out by design: {views} axillary tail (AT) views, "
            f"{test} unlabelled test_images")
