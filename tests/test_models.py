"""Models: each builds and trains a step, precision, fine-tuning, ImageNet weights offline."""
import keras
import numpy as np
import pytest

from mammo_train.models import classifiers
from mammo_train.training import runtime
from mammo_train.config import ConfigError


@pytest.fixture(autouse=True)
def _float32_policy():
  yield
  keras.mixed_precision.set_global_policy("float32")


def _train_step(model, classes):
  images = np.random.default_rng(0).integers(0, 256, (2,) + model.input_shape[1:], dtype=np.uint8)
  labels = np.array([[0.0], [1.0]]) if classes == 2 else np.eye(classes)[[0, 1]]
  classifiers.compile(model, classes, 1e-3)
  model.run_eagerly = True  # one step: tracing the big backbones' train graph would take minutes
  before = [w.numpy().copy() for w in model.trainable_weights]
  model.train_on_batch(images, labels)
  assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.parametrize("name, size, classes", [
    ("cnn", 32, 2), ("cnn", 32, 3), ("resnet50", 32, 2), ("vgg16", 32, 3), ("inceptionv3", 75, 2)])
def test_each_model_builds_and_trains_a_step(name, size, classes):
  model = classifiers.build(name, size, classes, "none", dropout=0.5, l2=1e-4)
  classifiers.set_fine_tune(model, None)
  assert model.input.dtype == "uint8"
  assert model.output.shape[-1] == (1 if classes == 2 else classes)
  _train_step(model, classes)


def test_frozen_and_fine_tuned_backbones_keep_batchnorm_frozen():
  model = classifiers.build("resnet50", 32, 2, "none", dropout=0.5, l2=0.0)
  classifiers.set_fine_tune(model, 0)
  assert [w.name for w in model.trainable_weights] == ["kernel", "bias"]  # the output layer only
  classifiers.set_fine_tune(model, 30)
  backbone = model.get_layer("backbone")
  tuned = [layer for layer in backbone.layers[-30:] if layer.trainable]
  assert tuned and not any(isinstance(layer, keras.layers.BatchNormalization) for layer in tuned)
  assert not any(layer.trainable_weights for layer in backbone.layers[:-30])
  with pytest.raises(ConfigError, match="more than the 17[0-9] layers"):
    classifiers.set_fine_tune(model, 1000)


def test_mixed_precision_keeps_the_output_float32():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  model = classifiers.build("cnn", 32, 2, "none", dropout=0.5, l2=0.0)
  assert model.get_layer("block1_conv").compute_dtype == "bfloat16"
  assert model.output.dtype == "float32"
  assert model.predict(np.zeros((1, 32, 32, 1), np.uint8), verbose=0).dtype == np.float32


def test_auto_precision_follows_the_hardware(monkeypatch):
  monkeypatch.setattr(runtime.tf.config, "list_physical_devices", lambda kind: [])
  monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: True)
  assert runtime.resolve_precision("auto") == "mixed_bfloat16"
  monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: False)
  assert runtime.resolve_precision("auto") == "float32"
  monkeypatch.setattr(runtime.tf.config, "list_physical_devices", lambda kind: ["GPU:0"])
  assert runtime.resolve_precision("auto") == "mixed_float16"
  assert runtime.resolve_precision("float32") == "float32"


def test_imagenet_weights_offline_say_how_to_pass_a_file(monkeypatch, tmp_path):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))

  def offline(*args, **kwargs):
    raise OSError("network is unreachable")

  monkeypatch.setattr(classifiers.socket, "create_connection", offline)
  with pytest.raises(ConfigError, match=r"--weights=/path/to/resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5"):
    classifiers.build("resnet50", 32, 2, "imagenet", dropout=0.5, l2=0.0)


def test_too_small_images_for_inception_are_refused():
  with pytest.raises(ConfigError, match="at least 75"):
    classifiers.build("inceptionv3", 64, 2, "none", dropout=0.5, l2=0.0)
