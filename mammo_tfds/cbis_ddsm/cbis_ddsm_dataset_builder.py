"""TFDS builder of CBIS-DDSM from the TCIA download (either NBIA layout) or the Kaggle JPEG copy.

How the CSVs are read, files matched and films split, and which bad inputs
stop the build or are skipped: `mammo_tfds/cbis_ddsm/examples.py` and README.md.
"""
import collections
import functools

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from mammo_tfds import features, generation, splits
from mammo_tfds.cbis_ddsm import cases, examples, layouts

HOMEPAGE = "https://www.cancerimagingarchive.net/collection/cbis-ddsm/"
# Subgroups the evaluation reports (schema: mammo_train/evaluation/subgroups.py; README
# "Subgroups and possible shortcuts"), stored in metadata.json with the prepared
# dataset. No possible shortcut: the CSVs hold no site, scanner or age, and
# density, abnormality type and subtlety are readings of the film itself, each
# alone near chance for the label on the real CSVs (README).
SUBGROUPS = {
    "features": [{"name": "abnormality"}, {"name": "breast_density"}, {"name": "subtlety"},
                 {"name": "view"}, {"name": "laterality"}],
    "shortcuts": [],
}


class Builder(generation.ParallelBuilder):
  """CBIS-DDSM scanned films, one example per film, labelled malignant if any abnormality on it is."""

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Film-level `abnormality` and `subtlety` features and the subgroup declaration.",
                   "1.2.0": "ROI masks decided from pixels (`abnormalities/roi`); films with missing or unusable "
                            "ROI files kept without that box; scanned-film crop robust to edge strips and margins."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  CBIS-DDSM cannot be downloaded automatically. Either
    - from https://www.cancerimagingarchive.net/collection/cbis-ddsm/ download the
      .tcia manifest and open it with the NBIA Data Retriever (about 163 GB; the
      "classic" or the "descriptive" directory layout), and the four case CSVs
      (mass/calc_case_description_train/test_set.csv), all under the manual dir; or
    - unpack the Kaggle copy (cbis-ddsm-breast-cancer-image-dataset: jpeg/ and
      csv/ with dicom_info.csv and the case CSVs) into the manual dir.
  Files are matched to CSV rows by the UIDs in their tags (or dicom_info.csv),
  never by folder names. Then: tfds build mammo_tfds/cbis_ddsm --manual_dir=<manual_dir>
  """

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self._orientations = collections.Counter()  # what decided the chest wall side -> films
    self.roi_counts = collections.Counter()  # abnormalities by ROI outcome (examples.ROI_OUTCOMES), for the audit

  def _info(self) -> tfds.core.DatasetInfo:
    abnormality = {
        "type": tfds.features.ClassLabel(names=list(cases.KINDS)),
        "id": tfds.features.Scalar(np.int32, doc="The CSV's abnormality id, 1.. per film and type."),
        "pathology": tfds.features.ClassLabel(names=list(cases.PATHOLOGIES)),
        "assessment": tfds.features.Scalar(np.int32, doc="BI-RADS assessment, 0-5."),
        "subtlety": tfds.features.Scalar(np.int32, doc="Subtlety rating, 0-5 (5 = obvious)."),
        "mass_shape": tfds.features.Text(doc="Masses; empty for calcifications or N/A."),
        "mass_margins": tfds.features.Text(doc="Masses; empty for calcifications or N/A."),
        "calc_type": tfds.features.Text(doc="Calcifications; empty for masses or N/A."),
        "calc_distribution": tfds.features.Text(doc="Calcifications; empty for masses or N/A."),
        "box": tfds.features.Tensor(shape=(4,), dtype=np.int32,
                                    doc="y0, x0, y1, x1 of the ROI mask in source pixels (end-exclusive); "
                                        "all zero when `roi` is roi_missing or roi_unusable."),
        "roi": tfds.features.Text(doc="How the box was found: " + ", ".join(examples.ROI_OUTCOMES)
                                  + " (examples.roi_box)."),
    }
    schema = features.common(self.builder_config.image_size)
    schema.update({
        "abnormalities": tfds.features.Sequence(abnormality),
        "breast_density": tfds.features.Scalar(np.int32, doc="BI-RADS density 1-4 as the CSV gives it (0 on 2 rows)."),
        "abnormality": tfds.features.ClassLabel(
            names=list(examples.ABNORMALITY_TYPES), doc="The film's abnormality types: mass, calcification or both."),
        "subtlety": tfds.features.Scalar(np.int32, doc="The highest subtlety rating of the film's abnormalities."),
        "official_split": tfds.features.ClassLabel(names=list(cases.OFFICIAL_SPLITS)),
        "orientation": tfds.features.Text(
            doc="What put the chest wall left: pixels, laterality, or 'pixels, laterality disagrees'."),
    })
    return self._mammo_info(schema, SUBGROUPS, HOMEPAGE)

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    all_cases = cases.read_cases(manual_dir)
    index = layouts.find(manual_dir)
    logging.info("cbis_ddsm: found the %s layout (%d series) and %d CSV rows", index.layout, len(index.series),
                 len(all_cases))
    for skip in index.skipped:
      self.skip_log.skip(skip.path, skip.reason, skip.detail)
    items, missing = examples.plan(all_cases, index)
    for skip in missing:
      self.skip_log.skip(skip.path, skip.reason, skip.detail)
    split_of = examples.assign_splits(all_cases)
    straddling = examples.patients_in_both(all_cases)
    self.info.metadata.update({
        "layout": index.layout,
        "csv_rows": len(all_cases),
        "films": len(cases.films(all_cases)),
        "films_with_two_series": sum(item.series_count > 1 for item in items),
        "patients_in_both_official_sets_moved_to_test": straddling,
    })
    self._manual_dir, self._layout = str(manual_dir), index.layout
    return self._splits_of({split: [item for item in items if split_of[item.cases[0].patient_id] == split]
                            for split in splits.SPLITS})

  def _item_fn(self):
    return functools.partial(examples.film_example, self._manual_dir, self.builder_config.image_size)

  def _record(self, results):
    """Counts what decided each film's orientation as the examples pass (plain builds)."""
    for key, example in super()._record(results):
      self._orientations[example["orientation"]] += 1
      self.roi_counts.update(abnormality["roi"] for abnormality in example["abnormalities"])
      yield key, example

  def _summary_line(self) -> str:
    disagree = self._orientations.get("pixels, laterality disagrees", 0)
    decided = ", ".join(f"{count} by '{how}'" for how, count in sorted(self._orientations.items()))
    return (f"{super()._summary_line()}; read the {self._layout} layout; chest wall side decided {decided}: "
            f"the pixels overruled the laterality on {disagree} films; ROI files of {sum(self.roi_counts.values())} "
            f"abnormalities: " + ", ".join(f"{self.roi_counts[outcome]} {outcome}" for outcome in examples.ROI_OUTCOMES)
            + " (a swap is decided from pixels and never skips a film; missing / unusable: kept without a box)")
