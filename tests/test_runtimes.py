"""mammo_train.inference.runtimes: the forward pass off Keras, converted once, checked against Keras."""
import json
import os

import keras
import numpy as np
import onnx
from onnx import numpy_helper
import pytest

from mammo_train import config
from mammo_train.inference import runtimes
from mammo_train.inputs import augmentations, feature_cache
from mammo_train.models import classifiers

CONVERTED = [name for name in ("onnxruntime", "openvino") if runtimes.installed(name)]


def _images(size, count=8):
  return np.random.RandomState(0).randint(0, 256, (count, size, size, 1)).astype(np.uint8)


@pytest.fixture(scope="module")
def cnn():
  keras.utils.set_random_seed(0)
  return classifiers.build("cnn", 64, 2, "none", dropout=0.5, l2=1e-4)


def test_auto_takes_the_fastest_installed_runtime_and_keras_where_conversion_does_not_pay(monkeypatch):
  monkeypatch.setattr(runtimes, "installed", lambda name: True)
  monkeypatch.setattr(runtimes, "bfloat16_cpu", lambda: True)
  assert runtimes.resolve("auto", accelerator=False) == "openvino"  # a float32 model: never bfloat16
  assert runtimes.resolve("openvino_bf16", accelerator=False) == "openvino_bf16"
  assert runtimes.resolve("auto", accelerator=True) == "keras"
  assert runtimes.resolve("auto", "mixed_bfloat16", accelerator=False) == "openvino_bf16"  # bfloat16 already
  assert runtimes.resolve("auto", "mixed_bfloat16", accelerator=True) == "keras"
  assert runtimes.resolve("auto", "mixed_float16", accelerator=False) == "keras"
  monkeypatch.setattr(runtimes, "bfloat16_cpu", lambda: False)
  assert runtimes.resolve("auto", "mixed_bfloat16", accelerator=False) == "keras"
  monkeypatch.setattr(runtimes, "installed", lambda name: name != "openvino")
  assert runtimes.resolve("auto", accelerator=False) == "onnxruntime"
  monkeypatch.setattr(runtimes, "installed", lambda name: name == "keras")
  assert runtimes.resolve("auto", accelerator=False) == "keras"


def test_a_runtime_that_is_missing_or_cannot_run_the_policy_is_refused_in_one_line(monkeypatch):
  monkeypatch.setattr(runtimes, "installed", lambda name: name != "openvino")
  with pytest.raises(config.ConfigError, match=r"--runtime=openvino: openvino is not installed: pip install "
                                               r"'mammo\[openvino\]'"):
    runtimes.resolve("openvino")
  with pytest.raises(config.ConfigError, match="computes in float32; this model computes in mixed_bfloat16"):
    runtimes.resolve("onnxruntime", "mixed_bfloat16")
  monkeypatch.setattr(runtimes, "installed", lambda name: True)
  monkeypatch.setattr(runtimes, "bfloat16_cpu", lambda: True)
  with pytest.raises(config.ConfigError, match="openvino_bf16 computes in bfloat16; this model computes in "
                                               "mixed_float16"):
    runtimes.resolve("openvino_bf16", "mixed_float16")
  with pytest.raises(config.ConfigError, match="expected one of"):
    runtimes.resolve("tensorrt")


@pytest.mark.parametrize("name", CONVERTED)
def test_a_real_conversion_of_the_cnn_passes_the_check_and_is_converted_once(name, cnn, tmp_path, monkeypatch):
  images = _images(64)
  forward = runtimes.checked_forward(cnn, name, str(tmp_path))
  outputs = forward(images)
  assert forward.name == name and forward.difference <= runtimes.TOLERANCE
  np.testing.assert_allclose(outputs, runtimes.keras_forward(cnn)(images), rtol=1e-4, atol=1e-6)
  import tf2onnx  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(tf2onnx.convert, "from_function", lambda *a, **k: pytest.fail("converted twice"))
  runtimes.checked_forward(cnn, name, str(tmp_path))(images)
  assert len(list(tmp_path.glob("*.onnx"))) == 1


@pytest.mark.parametrize("name", CONVERTED)
def test_a_perturbed_converted_model_stops_with_both_figures(name, cnn, tmp_path):
  path = runtimes.onnx_file(cnn, str(tmp_path))
  graph = onnx.load(path)
  largest = max(graph.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
  largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * 1.05, largest.name))
  onnx.save(graph, path)  # the cached file now answers for these weights
  with pytest.raises(runtimes.RuntimeMismatchError,
                     match=rf"--runtime={name}: outputs on 4 check images differ from Keras's by [0-9.e-]+ "
                           r"relative, above the tolerance 0.0001: pass --runtime=keras"):
    runtimes.checked_forward(cnn, name, str(tmp_path))(_images(64))


def test_an_injected_runtime_that_drifts_is_stopped_and_nan_is_not_equality(cnn):
  reference = runtimes.keras_forward(cnn)
  for drift in (lambda x: x * 1.001, lambda x: x * np.nan):
    injected = runtimes.Forward("onnxruntime", lambda images, d=drift: d(reference(images)))
    with pytest.raises(runtimes.RuntimeMismatchError):
      runtimes.Checked(injected, reference)(_images(64))


def test_only_the_first_call_is_checked(cnn):
  calls = []
  reference = runtimes.keras_forward(cnn)
  counted = runtimes.Forward("keras-counted", lambda images: calls.append(len(images)) or reference(images))
  checked = runtimes.Checked(runtimes.Forward("onnxruntime", reference), counted)
  checked(_images(64))
  checked(_images(64))
  assert calls == [runtimes.CHECK_IMAGES]


@pytest.mark.skipif("onnxruntime" not in CONVERTED, reason="onnxruntime is not installed")
def test_feature_cache_on_a_converted_resnet50_gives_kerass_features(tiny_builder, tmp_path):
  keras.utils.set_random_seed(0)
  model = classifiers.build("resnet50", 32, 2, "none", dropout=0.5, l2=1e-4)
  classifiers.set_fine_tune(model, 0)
  extractor, _ = classifiers.split_head(model)
  folders = {name: feature_cache.compute(str(tmp_path / name), tiny_builder, extractor, 32, 16,
                                         augmentations.Augmentation.none(), 1, 0, runtime=name)
             for name in ("keras", "onnxruntime")}
  for file in ("train_view0.npy", "validation.npy"):
    converted, kept = (np.load(os.path.join(folders[n], file)) for n in ("onnxruntime", "keras"))
    assert runtimes.relative_difference(converted, kept) <= runtimes.TOLERANCE
  assert json.loads(open(os.path.join(folders["onnxruntime"], feature_cache.KEY_FILE)).read())["runtime"] == \
      "onnxruntime"
  assert len(list((tmp_path / "onnxruntime" / "runtimes").glob("*.onnx"))) == 1


def test_a_model_trained_under_mixed_bfloat16_is_scored_in_bfloat16_or_by_keras(tmp_path, monkeypatch):
  """A saved model keeps its training policy; a float32 graph of it would not give the scores its threshold
  was chosen on, so float32 runtimes are refused, and auto takes openvino_bf16 where it can run, else Keras
  (predict resolves by `compute_policy`)."""
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    classifiers.build("cnn", 32, 2, "none", dropout=0.5, l2=1e-4).save(tmp_path / "mixed.keras")
  finally:
    keras.mixed_precision.set_global_policy("float32")
  loaded = keras.models.load_model(tmp_path / "mixed.keras")
  assert classifiers.compute_policy(loaded) == "mixed_bfloat16"
  assert classifiers.compute_policy(classifiers.build("cnn", 32, 2, "none", dropout=0.5, l2=1e-4)) == "float32"
  monkeypatch.setattr(runtimes, "bfloat16_cpu", lambda: False)
  assert runtimes.resolve("auto", classifiers.compute_policy(loaded), accelerator=False) == "keras"
  with pytest.raises(config.ConfigError, match="computes in mixed_bfloat16: use --runtime=keras"):
    runtimes.resolve("onnxruntime", classifiers.compute_policy(loaded))


@pytest.mark.skipif(not runtimes.available("openvino_bf16"),
                    reason="openvino is not installed or this CPU has no bfloat16 instructions")
def test_a_mixed_bfloat16_model_is_converted_from_its_float32_twin_and_stays_near_its_own_outputs(tmp_path):
  keras.utils.set_random_seed(0)
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    mixed = classifiers.build("cnn", 64, 2, "none", dropout=0.5, l2=1e-4)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert runtimes.resolve("auto", classifiers.compute_policy(mixed), accelerator=False) == "openvino_bf16"
  images = _images(64)
  forward = runtimes.checked_forward(mixed, "openvino_bf16", str(tmp_path))  # the float32 conversion gated
  outputs = forward(images)
  assert 0 < forward.difference < 1e-2
  np.testing.assert_allclose(outputs, runtimes.keras_forward(mixed)(images), atol=1e-2)
  twin = classifiers.float32_model(mixed)
  assert runtimes.onnx_file(twin, str(tmp_path)) == runtimes.onnx_file(mixed, str(tmp_path))  # one float32 file
  assert len(list(tmp_path.glob("*.onnx"))) == 1


@pytest.mark.skipif(not runtimes.available("openvino_bf16"),
                    reason="openvino is not installed or this CPU has no bfloat16 instructions")
def test_bfloat16_runtime_records_its_rounding_and_gates_its_float32_conversion(cnn, tmp_path):
  images = _images(64)
  forward = runtimes.checked_forward(cnn, "openvino_bf16", str(tmp_path))
  outputs = forward(images)
  # It really computes in bfloat16: further from Keras than any float32 runtime may be, yet close.
  assert runtimes.TOLERANCE < forward.difference < 1e-2
  assert forward.difference == runtimes.relative_difference(outputs[:runtimes.CHECK_IMAGES],
                                                            runtimes.keras_forward(cnn)(images[:runtimes.CHECK_IMAGES]))
  assert len(list(tmp_path.glob("*.onnx"))) == 1  # the float32 check compiles the same file
  path = runtimes.onnx_file(cnn, str(tmp_path))
  graph = onnx.load(path)
  largest = max(graph.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
  largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * 1.05, largest.name))
  onnx.save(graph, path)
  with pytest.raises(runtimes.RuntimeMismatchError,
                     match=r"--runtime=openvino_bf16: float32 outputs on 4 check images differ from Keras's by "
                           r"[0-9.e-]+ relative, above the tolerance 0.0001"):
    runtimes.checked_forward(cnn, "openvino_bf16", str(tmp_path))(images)


def test_bfloat16_on_a_cpu_without_its_instructions_is_refused_before_any_conversion(monkeypatch):
  monkeypatch.setattr(runtimes, "installed", lambda name: True)
  monkeypatch.setattr(runtimes, "bfloat16_cpu", lambda: False)
  with pytest.raises(config.ConfigError, match=r"^--runtime=openvino_bf16: this CPU has no bfloat16 instructions "
                                               r"\(AVX512-BF16 or AMX\), so OpenVINO would compute in float32: use "
                                               r"--runtime=openvino$"):
    runtimes.resolve("openvino_bf16", accelerator=False)
  assert runtimes.resolve("openvino", accelerator=False) == "openvino"  # float32: what such a CPU runs
  assert not runtimes.available("openvino_bf16") and runtimes.available("openvino")


def test_bfloat16_features_get_a_cache_of_their_own_and_float32_runtimes_share_one(tiny_builder):
  keras.utils.set_random_seed(0)
  extractor, _ = classifiers.split_head(classifiers.build("resnet50", 32, 2, "none", dropout=0.5, l2=1e-4))
  keys = {name: feature_cache.cache_key(tiny_builder, extractor, 32, augmentations.Augmentation.none(), 1, 0,
                                        runtime=name) for name in config.RUNTIMES[1:]}
  assert keys["keras"] == keys["onnxruntime"] == keys["openvino"]
  assert keys["openvino_bf16"] == {**keys["openvino"], "backbone_compute": "bfloat16"}
