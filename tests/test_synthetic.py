"""The synthetic dataset as the trainer reads it: patient-level, stratified, as the card says."""
import collections

from mammo_train import data


def test_no_patient_is_in_two_splits(tiny_builder):
  splits_of = collections.defaultdict(set)
  for split in data.SPLITS:
    for patient in data.split_metadata(tiny_builder, split)["patient_id"]:
      splits_of[patient].add(split)
  assert len(splits_of) == 40
  assert all(len(splits) == 1 for splits in splits_of.values())


def test_both_classes_in_every_split_and_mostly_malignant(tiny_builder):
  for split in data.SPLITS:
    counts = collections.Counter(data.split_metadata(tiny_builder, split)["label"].tolist())
    assert counts[0] > 0 and counts[1] > counts[0], (split, counts)


def test_every_breast_has_both_views(tiny_builder):
  views = collections.defaultdict(set)
  metadata = data.split_metadata(tiny_builder, "all")
  for patient, side, view in zip(metadata["patient_id"], metadata["laterality"], metadata["view"]):
    views[(patient, side)].add(view)
  assert all(v == {"CC", "MLO"} for v in views.values())
