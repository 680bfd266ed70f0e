"""The input pipeline: evaluation order, oversampling, augmentation, missing datasets."""
import numpy as np
import pytest

from mammo_train.inputs import augmentations, data

SIZE = 32


def _labels(batches, count):
  return np.concatenate([labels.numpy() for _, labels in batches.take(count)])


def test_eval_batches_follow_split_metadata_order(tiny_builder):
  for split in ("test", "all"):
    metadata = data.split_metadata(tiny_builder, split)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in data.eval_batches(tiny_builder, split, SIZE, 8)])
    labels = np.concatenate(labels)
    assert len(labels) == data.num_examples(tiny_builder, split) == len(metadata["patient_id"])
    np.testing.assert_array_equal(labels, metadata["label"])
    assert images[0].dtype == np.uint8 and images[0].shape[1:] == (SIZE, SIZE, 1)
    assert set(metadata["laterality"]) <= {"L", "R"} and set(metadata["view"]) <= {"CC", "MLO"}
  # Two reads give the same images in the same order.
  first = np.concatenate([x.numpy() for x, _ in data.eval_batches(tiny_builder, "test", SIZE, 8)])
  again = np.concatenate([x.numpy() for x, _ in data.eval_batches(tiny_builder, "test", SIZE, 8)])
  np.testing.assert_array_equal(first, again)


def _train(builder, oversample, augmentation=augmentations.Augmentation.none(), batch=16):
  return data.train_batches(builder, image_size=SIZE, batch_size=batch, augmentation=augmentation,
                            oversample=oversample, cache=True, seed=1, deterministic=True)


def test_oversample_balances_training_batches_only(tiny_builder):
  counts = data.class_counts(tiny_builder)
  assert counts[0] / counts.sum() < 0.2  # synthetic/tiny: 8 benign, 58 malignant
  plain = _labels(_train(tiny_builder, oversample=False), 40)
  balanced = _labels(_train(tiny_builder, oversample=True), 40)
  assert plain.mean() > 0.8
  assert 0.42 < balanced.mean() < 0.58, balanced.mean()  # 640 draws of a fair coin
  # Validation and test stay as stored: every example once, in file order.
  for split, batches in (("validation", data.validation_batches(
      tiny_builder, image_size=SIZE, global_batch_size=16, cache=True)),
                         ("test", data.eval_batches(tiny_builder, "test", SIZE, 16))):
    labels = np.concatenate([y.numpy().reshape(-1) for _, y in batches])
    np.testing.assert_array_equal(labels, data.split_metadata(tiny_builder, split)["label"])


def test_augmentation_changes_training_images_but_not_their_kind(tiny_builder):
  plain, _ = next(iter(_train(tiny_builder, False)))
  augmented, targets = next(iter(_train(tiny_builder, False, augmentations.Augmentation(rotation=20, zoom=0.2, shift=0.1))))
  assert augmented.dtype == plain.dtype == np.uint8 and augmented.shape == plain.shape == (16, SIZE, SIZE, 1)
  assert targets.shape == (16, 1)
  assert not np.array_equal(augmented.numpy(), plain.numpy())
  assert int(augmented.numpy().max()) > 100  # still images, not a black frame


def test_missing_and_unknown_datasets_say_what_to_do(tmp_path):
  with pytest.raises(data.DatasetNotBuiltError, match=r"tfds build mammo_tfds/mias --config=density"):
    data.load_builder("mias/density", str(tmp_path))
  with pytest.raises(ValueError, match="unknown dataset 'nope'"):
    data.load_builder("nope", str(tmp_path))


def test_class_weights_balance_the_classes():
  weights = data.balancing_class_weights(np.array([10, 30]))
  assert weights[0] * 10 == pytest.approx(weights[1] * 30)


def test_the_shares_of_a_split_are_disjoint_and_cover_it(tiny_builder):
  whole = data.split_metadata(tiny_builder, "train")
  parts = [data.split_metadata(tiny_builder, "train", share=data.Share(index, 3)) for index in range(3)]
  total = len(whole["label"])
  for part in parts:  # near-equal ranges of examples, not of files
    assert abs(len(part["label"]) - total / 3) <= 1, [len(p["label"]) for p in parts]
  for key, column in whole.items():  # in file order, one after the other: every example exactly once
    np.testing.assert_array_equal(np.concatenate([part[key] for part in parts]), column)
  images = np.concatenate([x.numpy() for x, _ in data.eval_batches(tiny_builder, "train", SIZE, 8, data.Share(1, 3))])
  assert len(images) == len(parts[1]["label"])
  with pytest.raises(ValueError, match="share 2 of 2"):
    data.Share(2, 2)


def test_a_share_is_oversampled_to_balance_with_its_own_seed(tiny_builder):
  share = data.Share(1, 2)
  counts = data.class_counts(tiny_builder, share=share)
  assert counts.sum() < data.num_examples(tiny_builder, "train") and counts.min() > 0
  batches = data.train_batches(tiny_builder, image_size=SIZE, batch_size=16, augmentation=augmentations.Augmentation.none(),
                               oversample=True, cache=True, seed=1, deterministic=True, share=share)
  balanced = _labels(batches, 40)
  assert 0.42 < balanced.mean() < 0.58, balanced.mean()
  assert share.seed(1) != data.WHOLE.seed(1) == 1  # one machine keeps the run's seed


def test_class_weights_ride_in_the_batches(tiny_builder):
  weights = data.balancing_class_weights(data.class_counts(tiny_builder))
  batches = data.train_batches(tiny_builder, image_size=SIZE, batch_size=16, augmentation=augmentations.Augmentation.none(),
                               oversample=False, cache=True, seed=1, deterministic=True, class_weight=weights)
  for _, targets, sample_weights in batches.take(5):
    expected = [weights[int(label)] for label in targets.numpy()[:, 0]]
    np.testing.assert_allclose(sample_weights.numpy(), expected, rtol=1e-6)
