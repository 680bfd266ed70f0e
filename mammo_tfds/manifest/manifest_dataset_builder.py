"""TFDS builder of any mammography collection given as a folder of images and a manifest.csv.

The manifest's columns, what is read from the images, how splits are made and
which bad inputs stop the build or are skipped: `mammo_tfds/manifest/examples.py`
and README.md (a dataset card to fill in for your collection).
"""
import functools

from absl import logging
import tensorflow_datasets as tfds

from mammo_tfds import features, generation, splits
from mammo_tfds.manifest import examples


class Builder(generation.ParallelBuilder):
  """Images listed in manifest.csv, labelled benign / malignant per image."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the images (DICOM, 8- or 16-bit PNG, JPEG, TIFF, PGM; any folder layout)
  and a manifest.csv under the manual dir. manifest.csv has one row per image:
  path (relative to the manual dir), patient_id, label (benign / malignant),
  optionally laterality (L / R), view (CC / MLO), split (train / validation /
  test), and any other columns, which are kept as metadata. Name the build
  after your collection with --config='{"name": "vindr", "image_size": 600}'.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    schema = features.common(self.builder_config.image_size)
    schema.update({
        "metadata": tfds.features.Text(doc="The manifest's other columns: a JSON object of column -> text."),
        "orientation": tfds.features.Text(doc="What put the chest wall on the left (imaging.chest_wall_side)."),
    })
    return self._mammo_info(schema)

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager.manual_dir
    rows = examples.read_manifest(manual_dir)
    scanned = examples.scan(manual_dir, rows, self.skip_log)
    split_of = examples.assign_splits(scanned)
    links = examples.duplicate_links(scanned)
    self.info.metadata.update({
        "manifest_rows": len(rows),
        "splits_from": "manifest" if rows and rows[0].split else "patients, stratified",
        "identical_pixels_patients": [list(pair) for pair in sorted({tuple(sorted(pair)) for pair in links})],
    })
    for first, second in links:
      logging.info("manifest: patients %s and %s have identical images: kept in one split", first, second)
    self._manual_dir = str(manual_dir)
    return self._splits_of({split: [s for s in scanned if split_of[s.row.patient_id] == split]
                            for split in splits.SPLITS})

  def _item_fn(self):
    return functools.partial(examples.image_example, self._manual_dir, self.builder_config.image_size)
