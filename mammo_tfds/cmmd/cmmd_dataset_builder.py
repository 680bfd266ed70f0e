"""TFDS builder of The Chinese Mammography Database (CMMD), labelled per breast.

How the collection is read, joined and checked, and which bad inputs stop
the build or are skipped: `mammo_tfds/cmmd/examples.py` and README.md.
"""
import functools

import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import features, generation, splits
from mammo_tfds.cmmd import examples

HOMEPAGE = "https://www.cancerimagingarchive.net/collection/cmmd/"
# Subgroups the evaluation reports and the possible shortcuts its metadata-only
# baseline is fitted on (schema: mammo_train/evaluation/subgroups.py; README "Subgroups
# and possible shortcuts"). Stored in metadata.json with the prepared dataset.
SUBGROUPS = {
    "features": [{"name": "subset"}, {"name": "age", "bands": [40, 50, 60, 70], "missing": -1},
                 {"name": "abnormality"}, {"name": "view"}, {"name": "laterality"}],
    "shortcuts": ["age", "subset"],
}

class Builder(generation.ParallelBuilder):
  """CMMD mammograms labelled benign / malignant per breast."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  CMMD cannot be downloaded automatically: TCIA serves it through the NBIA Data
  Retriever. From https://www.cancerimagingarchive.net/collection/cmmd/ :
    1. download the .tcia manifest and open it with the NBIA Data Retriever;
       choose the "Descriptive Directory Name" layout or any other (file and
       folder names are not used: everything is read from the DICOM tags);
    2. download CMMD_clinicaldata_revision.xlsx (or keep a CSV export of it,
       named *clinicaldata*.csv);
    3. put both under the manual dir, e.g.
         <manual_dir>/CMMD/D1-0001/.../1-1.dcm
         <manual_dir>/CMMD_clinicaldata_revision.xlsx
  and build with: tfds build mammo_tfds/cmmd --manual_dir=<manual_dir>
  """

  def _info(self) -> tfds.core.DatasetInfo:
    schema = features.common(self.builder_config.image_size)
    schema.update({
        "age": tfds.features.Scalar(np.int32, doc="Age at examination in years; -1 if missing."),
        "abnormality": tfds.features.ClassLabel(names=list(examples.ABNORMALITIES)),
        "subtype": tfds.features.Text(doc="Molecular subtype (D2 malignant breasts); empty if missing."),
        "subset": tfds.features.Text(doc="D1 or D2, from the patient id. Predicts the label: a confounder."),
    })
    return self._mammo_info(schema, SUBGROUPS, HOMEPAGE)

  def _split_generators(self, dl_manager):
    result = examples.scan(dl_manager.manual_dir, self.skip_log)
    duplicates = examples.duplicate_sets(result.labelled)
    split_of = examples.assign_splits(result.labelled, duplicates)
    self.info.metadata.update(examples.report(result, duplicates))
    self._without_row = len(result.without_row)
    for path in result.without_row:
      self.audit.left_out(path, examples.NO_SHEET_ROW, "the breast has no row in the clinical sheet: no label")
    self._manual_dir = str(dl_manager.manual_dir)
    return self._splits_of({split: [pair for pair in result.labelled if split_of[pair[0].patient_id] == split]
                            for split in splits.SPLITS})

  def _item_fn(self):
    return functools.partial(examples.labelled_example, self._manual_dir, self.builder_config.image_size)

  def _summary_line(self) -> str:
    return (f"{super()._summary_line()}; left out by design: {self._without_row} images of breasts "
            "with no clinical sheet row")
