"""The synthetic dataset as the trainer reads it: patient-level, stratified, as the card says."""
import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mammo_tfds import phantom
from mammo_train.inputs import data


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


@pytest.mark.parametrize("malignant", [False, True])
@pytest.mark.parametrize("laterality", ["L", "R"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesion_box_is_where_the_lesion_was_drawn(monkeypatch, seed, malignant, laterality):
  """The same film drawn again with zero lesion contrast (same random stream) is the film
  without its lesion, so their difference is the lesion as drawn."""
  film = phantom.draw_film(np.random.default_rng(seed), 300, 250, malignant, laterality, "CC")
  monkeypatch.setattr(phantom, "CONTRAST", {False: (0.0, 0.0), True: (0.0, 0.0)})
  without = phantom.draw(np.random.default_rng(seed), 300, 250, malignant, laterality, "CC")
  lesion = film.pixels.astype(int) - without
  assert lesion.min() >= 0
  half = phantom.LESION_BOX_LEVEL * lesion.max()
  y0, x0, y1, x1 = film.lesion_box
  assert 0 <= y0 < y1 <= 300 and 0 <= x0 < x1 <= 250
  inside = np.zeros(lesion.shape, bool)
  inside[y0:y1, x0:x1] = True
  # Every pixel the lesion brightens by more than half its peak is in the box (2 grey levels of rounding)...
  assert not (lesion[~inside] > half + 2).any()
  # ...and the box is no larger: each of its edges touches such a pixel.
  for edge in (lesion[y0, x0:x1], lesion[y1 - 1, x0:x1], lesion[y0:y1, x0], lesion[y0:y1, x1 - 1]):
    assert edge.max() >= half - 2


def test_every_example_has_a_lesion_box_inside_its_crop(tiny_builder):
  assert "lesion_box" in tiny_builder.info.features
  examples = tiny_builder.as_dataset(split="train+validation+test",
                                     decoders={"image": tfds.decode.SkipDecoding()})
  count = 0
  for example in examples.as_numpy_iterator():
    y0, x0, y1, x1 = example["lesion_box"]
    cy0, cx0, cy1, cx1 = example["crop_box"]
    assert cy0 <= y0 < y1 <= cy1 and cx0 <= x0 < x1 <= cx1, example["source"]
    count += 1
  assert count == 94
