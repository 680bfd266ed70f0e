"""Frozen-backbone training on cached features: same outputs, right invalidation."""
import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from mammo_train.inference import runtimes
from mammo_train.inputs import augmentations, data, feature_cache
from mammo_train.models import classifiers

SIZE = 32


@pytest.fixture()
def resnet():
  keras.utils.set_random_seed(0)
  model = classifiers.build("resnet50", SIZE, 2, "none", dropout=0.5, l2=1e-4)
  classifiers.set_fine_tune(model, 0)
  return model


def test_head_on_extracted_features_equals_the_full_model(resnet, tiny_builder):
  extractor, head = classifiers.split_head(resnet)
  images, _ = next(iter(data.eval_batches(tiny_builder, "validation", SIZE, 8)))
  np.testing.assert_allclose(head(extractor(images)), resnet(images), rtol=1e-5, atol=1e-6)


def test_head_shares_the_models_weights(resnet):
  _, head = classifiers.split_head(resnet)
  output = resnet.get_layer("output")
  assert any(w is output.kernel for w in head.weights)
  output.kernel.assign(np.ones(output.kernel.shape, np.float32))
  np.testing.assert_array_equal(head.get_layer("output").kernel.numpy(), 1.0)


def _compute(tmp_path, builder, extractor, views=2, augmentation=augmentations.Augmentation(), seed=0):
  return feature_cache.compute(str(tmp_path), builder, extractor, SIZE, 16, augmentation, views, seed)


def test_cache_is_reused_for_the_same_key_and_recomputed_when_it_changes(resnet, tiny_builder, tmp_path,
                                                                        monkeypatch):
  extractor, _ = classifiers.split_head(resnet)
  first = _compute(tmp_path, tiny_builder, extractor)
  saved = []
  save = np.save
  monkeypatch.setattr(feature_cache.np, "save", lambda path, *args, **kwargs: saved.append(path) or save(
      path, *args, **kwargs))
  assert _compute(tmp_path, tiny_builder, extractor) == first
  assert not saved, "reused, not rewritten"
  assert _compute(tmp_path, tiny_builder, extractor, views=3) != first
  assert _compute(tmp_path, tiny_builder, extractor, seed=1) != first
  assert _compute(tmp_path, tiny_builder, extractor,
                  augmentation=dataclasses.replace(augmentations.Augmentation(), rotation=5.0)) != first
  other_weights = keras.models.clone_model(resnet)  # fresh random backbone weights
  assert _compute(tmp_path, tiny_builder, classifiers.split_head(other_weights)[0]) != first


def test_cache_key_names_the_dataset_version(resnet, tiny_builder):
  extractor, _ = classifiers.split_head(resnet)
  key = feature_cache.cache_key(tiny_builder, extractor, SIZE, augmentations.Augmentation(), 2, 0)
  assert key["dataset"] == tiny_builder.info.full_name and str(tiny_builder.info.version) in key["dataset"]


def test_cached_views_and_batches(resnet, tiny_builder, tmp_path):
  extractor, _ = classifiers.split_head(resnet)
  folder = _compute(tmp_path, tiny_builder, extractor, views=2)
  train = [np.load(os.path.join(folder, f"train_view{v}.npy")) for v in range(2)]
  assert train[0].shape == (data.num_examples(tiny_builder, "train"), 2048)
  assert not np.allclose(train[0], train[1]), "two augmented views differ"
  unaugmented = _compute(tmp_path, tiny_builder, extractor, views=4, augmentation=augmentations.Augmentation.none())
  assert not os.path.exists(os.path.join(unaugmented, "train_view1.npy")), "no augmentation: one view"
  features, targets = next(iter(feature_cache.train_batches(folder, 2, 8, oversample=True, seed=0)))
  assert features.shape == (8, 2048) and targets.shape == (8, 1)
  validation = np.load(os.path.join(folder, "validation.npy"))
  expected = np.asarray(extractor(next(iter(data.eval_batches(tiny_builder, "validation", SIZE, 64)))[0]))
  np.testing.assert_allclose(validation, expected, rtol=1e-5, atol=1e-5)


def test_frozen_backbone_run_trains_the_head_on_cached_features(tiny_data_dir, tmp_path, capsys, monkeypatch):
  from tests.test_train import QUICK, history, run_main  # pylint: disable=import-outside-toplevel
  workdir = tmp_path / "frozen"
  argv = [*QUICK, f"--data_dir={tiny_data_dir}", f"--workdir={workdir}", "--model=resnet50", "--weights=none",
          "--fine_tune_layers=0", "--epochs=3", "--cache_views=2", "--oversample"]
  status, err = run_main(argv, capsys, monkeypatch)
  assert status == 0, err
  caches = [name for name in os.listdir(workdir / "feature_cache") if name != "runtimes"]  # converted backbones
  assert len(caches) == 1 and os.path.exists(workdir / "feature_cache" / caches[0] / feature_cache.KEY_FILE)
  assert len(history(workdir)) == 3
  ran_on = json.loads((workdir / "run.json").read_text())["backbone_runtime"]
  assert ran_on == runtimes.resolve("auto", "float32", accelerator=False)  # what auto is here, recorded
  assert json.loads((workdir / "feature_cache" / caches[0] / feature_cache.KEY_FILE).read_text())["runtime"] == ran_on
  best = keras.models.load_model(workdir / "best.keras")
  assert best.input.shape[1:] == (SIZE, SIZE, 1), "best.keras is the whole model, not the head"
  final = keras.models.load_model(workdir / "final.keras")
  images, _ = next(iter(data.eval_batches(data.load_builder("synthetic/tiny", str(tiny_data_dir)), "test", SIZE, 4)))
  assert np.all(np.isfinite(final.predict(images, verbose=0)))
