"""A Keras model's forward pass on the fastest installed runtime: OpenVINO, ONNX Runtime or Keras.

The frozen backbone's pass over every training image (the feature cache)
and predict's model stage are almost all of their commands' time, and on a
CPU the same float32 graph runs faster outside TensorFlow. So `--runtime`
(auto | keras | onnxruntime | openvino | openvino_bf16) picks who runs that
pass. auto takes, for a float32 model, the fastest installed float32
runtime (OpenVINO, then ONNX Runtime; measured in docs/performance.md); for
a mixed_bfloat16 model, `openvino_bf16` where this CPU can run it (below);
Keras on a GPU, under mixed_float16, or when nothing else is installed.

The model is converted once (tf2onnx, the same converter `export` uses;
OpenVINO reads the ONNX file itself) into a float32 graph, and the file is
kept in a folder the caller names, keyed on what it depends on: the
model's name, input side and a hash of its weights. A rerun with the same
weights reuses it.

Equality is checked, not assumed: `Checked` sends the first images it is
given through Keras too, and a relative difference above `TOLERANCE`
stops the command with one line naming the difference and the tolerance
(`RuntimeMismatchError`, a usage error: the fix is `--runtime=keras`).

No float32 runtime can go much further on a CPU: OpenVINO's float32
ResNet50 at 600 px (about 59 GFLOP an image) ran 4.1 img/s on this
project's 2-core AMD EPYC, about 240 GFLOP/s, which is the two cores'
float32 FMA peak (2 x 32 FLOP a cycle at about 3.7 GHz). On a CPU with
bfloat16 instructions (AVX512-BF16, AMX) OpenVINO can compute in bfloat16
at twice that (8.0 img/s there; Keras under mixed_bfloat16 4.9), but its
outputs are not a float32 model's: on MIAS films ResNet50's (random
weights) features differed by 3.4e-3 relative and its scores by up to
1.7e-3. So that is a runtime of its own, `openvino_bf16`, which auto never
picks for a float32 model. A mixed_bfloat16 model computes in bfloat16
already, and there openvino_bf16 is as near to it as Keras's own bfloat16
is to float32 (features: 3.7e-3 from the mixed model's, against 5.6e-3
between the mixed model and its float32 twin), so auto picks it. Its check
gates the conversion (the same file computing in float32 must match the
float32 model within TOLERANCE) and measures bfloat16's rounding against
the model's own outputs on the check images (`Checked.difference`), which
predict writes on every row and the feature cache in its key file; its
features get a cache folder of their own.
"""
import hashlib
import importlib.util
import json
import os
import tempfile
from typing import Callable

import keras
import numpy as np
from absl import logging

from mammo_train.config.shared import RUNTIMES
from mammo_train.errors import ConfigError
from mammo_train.models import classifiers

# Fastest first among float32 runtimes, as measured on 2 CPU cores (docs/performance.md); Keras is always there.
_PREFERENCE = ("openvino", "onnxruntime")
_PACKAGES = {"openvino": ("openvino", "pip install 'mammo[openvino]'"),
             "openvino_bf16": ("openvino", "pip install 'mammo[openvino]'"),
             "onnxruntime": ("onnxruntime", "pip install onnxruntime (a dependency of mammo: reinstall it)")}
# Runtimes computing in bfloat16: outputs differ from Keras's by its rounding (module docstring).
BFLOAT16 = ("openvino_bf16",)
# The largest relative difference (max |runtime - Keras| / max |Keras|) accepted.
TOLERANCE = 1e-4
# Images of the first batch that go through both the runtime and Keras.
CHECK_IMAGES = 4
ONNX_OPSET = 17


class RuntimeMismatchError(ConfigError):
  """The converted model does not give Keras's outputs on the check images."""


def installed(name: str) -> bool:
  return name == "keras" or importlib.util.find_spec(_PACKAGES[name][0]) is not None


def bfloat16_cpu() -> bool:
  """Whether OpenVINO computes bfloat16 natively on this CPU (AVX512-BF16 or AMX); elsewhere it would quietly
  compute in float32, and a run would record a precision it did not get."""
  import openvino  # pylint: disable=import-outside-toplevel
  return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def available(name: str) -> bool:
  """Whether runtime `name` (not auto) can run here: installed, and for bfloat16 a CPU that has it."""
  return installed(name) and (name not in BFLOAT16 or bfloat16_cpu())


def resolve(choice: str, precision: str = "float32", accelerator: bool | None = None) -> str:
  """The runtime `--runtime=choice` means here: auto -> the fastest installed one.

  accelerator: whether a GPU runs Keras (default: ask TensorFlow).

  Raises:
    ConfigError: an unknown choice, one not installed, or one that cannot run this policy.
  """
  if choice not in RUNTIMES:
    raise ConfigError(f"--runtime={choice}: expected one of {', '.join(RUNTIMES)}")
  if choice == "auto":
    if accelerator is None:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
      accelerator = bool(tf.config.list_physical_devices("GPU"))
    if accelerator:
      return "keras"
    if precision == "mixed_bfloat16":  # the model computes in bfloat16 already (module docstring)
      return next((name for name in BFLOAT16 if available(name)), "keras")
    if precision != "float32":
      return "keras"
    return next((name for name in _PREFERENCE if installed(name)), "keras")
  if choice != "keras":
    if not installed(choice):
      raise ConfigError(f"--runtime={choice}: {_PACKAGES[choice][0]} is not installed: {_PACKAGES[choice][1]}")
    if not available(choice):
      raise ConfigError(f"--runtime={choice}: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so "
                        "OpenVINO would compute in float32: use --runtime=openvino")
    if precision != "float32" and not (choice in BFLOAT16 and precision == "mixed_bfloat16"):
      raise ConfigError(f"--runtime={choice} computes in {'bfloat16' if choice in BFLOAT16 else 'float32'}; this "
                        f"model computes in {precision}: use --runtime=keras, or train with --precision=float32")
  return choice


def weights_digest(model: keras.Model) -> str:
  """SHA-256 of every weight of the model, in order: what a converted copy or its features depend on."""
  digest = hashlib.sha256()
  for weight in model.weights:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
  return digest.hexdigest()


class Forward:
  """uint8 images [B, S, S, 1] (numpy or tensor) -> the model's outputs, float32 numpy, on one runtime."""

  def __init__(self, name: str, run: Callable):
    self.name, self._run = name, run

  def __call__(self, images) -> np.ndarray:
    return np.asarray(self._run(np.asarray(images)), dtype=np.float32)


def keras_forward(model: keras.Model) -> Forward:
  """The model called on each batch in one traced graph (eager calls were ~2x slower at 600 px)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  run = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
  return Forward("keras", lambda images: run(images).numpy())


def onnx_file(model: keras.Model, folder: str) -> str:
  """The model converted to a float32 ONNX graph in `folder`, now unless a copy with these weights is there.

  A mixed-precision model is converted from its float32 twin (`classifiers.float32_model`: the same
  weights; tf2onnx's graph of the mixed one does not load in OpenVINO), so both share one file.
  Written to a temporary name and renamed, so a killed conversion never leaves a file that looks done.
  """
  size = model.input_shape[1]
  key = {"model": model.name, "image_size": size, "weights_sha256": weights_digest(model), "opset": ONNX_OPSET}
  digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(folder, f"{model.name}_{size}px_{digest}.onnx")
  if os.path.exists(path):
    return path
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf2onnx  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  spec = [tf.TensorSpec([None, size, size, 1], tf.uint8, name="image")]
  float32 = classifiers.float32_model(model)
  function = tf.function(lambda image: tf.cast(float32(image, training=False), tf.float32), input_signature=spec)
  handle, partial = tempfile.mkstemp(suffix=".partial", dir=folder)
  os.close(handle)
  tf2onnx.convert.from_function(function, input_signature=spec, opset=ONNX_OPSET, output_path=partial)
  os.replace(partial, path)
  return path


def _onnxruntime(path: str) -> Callable:
  import onnxruntime  # pylint: disable=import-outside-toplevel
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  name = session.get_inputs()[0].name
  return lambda images: session.run(None, {name: images})[0]


def _openvino(path: str, precision: str = "f32") -> Callable:
  """The file compiled for the CPU computing in `precision` (f32 | bf16), asked for explicitly: on CPUs
  with AVX512-BF16 (this project's AMD EPYCs) OpenVINO 2026 defaults to bfloat16, and the cnn's scores then
  differed from Keras's by 4e-4 relative."""
  import openvino  # pylint: disable=import-outside-toplevel
  compiled = openvino.Core().compile_model(path, "CPU", {"INFERENCE_PRECISION_HINT": precision})
  return lambda images: compiled(images)[0]


_LOADERS = {"onnxruntime": _onnxruntime, "openvino": _openvino, "openvino_bf16": lambda path: _openvino(path, "bf16")}


def forward(model: keras.Model, name: str, folder: str) -> Forward:
  """The model's forward pass on runtime `name` (`resolve`d), converting into `folder` if needed."""
  if name == "keras":
    return keras_forward(model)
  path = onnx_file(model, folder)
  try:
    return Forward(name, _LOADERS[name](path))
  except Exception as error:  # pylint: disable=broad-except  # each runtime raises its own types
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise ConfigError(f"{path}: {name} cannot load it ({reason[:200]}): delete it to convert again, or pass "
                      "--runtime=keras") from None


def relative_difference(outputs: np.ndarray, reference: np.ndarray) -> float:
  """max |outputs - reference| / max |reference| (a difference of zeros is 0)."""
  scale = float(np.max(np.abs(reference))) if reference.size else 0.0
  difference = float(np.max(np.abs(outputs - reference))) if reference.size else 0.0
  return difference / scale if scale else difference


class Checked:
  """A Forward whose first call also runs its first `CHECK_IMAGES` images through Keras and compares.

  `difference` is what the runtime's outputs differ from the model's own
  (Keras's) by. For a bfloat16 runtime the gate is on `conversion` instead:
  (the same converted file computing in float32, Keras running the float32
  twin of the model) must agree within TOLERANCE. bfloat16's own rounding
  grows with the model's depth (module docstring), so it is measured and
  recorded, not gated.

  Raises RuntimeMismatchError on that first call when the (float32) conversion differs by more than TOLERANCE.
  """

  def __init__(self, runtime: Forward, reference: Forward, conversion: tuple[Forward, Forward] | None = None):
    self.runtime, self.reference, self.conversion, self.name = runtime, reference, conversion, runtime.name
    self.difference = None  # set by the check

  def __call__(self, images) -> np.ndarray:
    outputs = self.runtime(images)
    if self.difference is None and self.runtime.name != "keras":
      sample = np.asarray(images)[:CHECK_IMAGES]
      expected = self.reference(sample)
      self.difference = relative_difference(outputs[:CHECK_IMAGES], expected)
      converted = self.difference
      if self.conversion is not None:
        float32, float32_reference = self.conversion
        converted = relative_difference(float32(sample), expected if float32_reference is self.reference
                                        else float32_reference(sample))
      if not converted <= TOLERANCE:  # NaN fails too
        outputs_named = "outputs" if self.conversion is None else "float32 outputs"
        raise RuntimeMismatchError(
            f"--runtime={self.name}: {outputs_named} on {len(sample)} check images differ from Keras's by "
            f"{converted:.3g} relative, above the tolerance {TOLERANCE:g}: pass --runtime=keras")
      if self.conversion is not None:
        logging.info("--runtime=%s: the conversion matches Keras to %.2g relative; bfloat16 outputs differ from "
                     "the model's by %.2g on %d check images", self.name, converted, self.difference, len(sample))
    return outputs


def checked_forward(model: keras.Model, name: str, folder: str) -> Checked:
  """`forward` on runtime `name`, checked against Keras on its first batch."""
  runtime = forward(model, name, folder)
  if name == "keras":
    return Checked(runtime, runtime)
  reference = keras_forward(model)
  if name not in BFLOAT16:
    return Checked(runtime, reference)
  float32 = classifiers.float32_model(model)
  return Checked(runtime, reference, (forward(model, "openvino", folder),
                                      reference if float32 is model else keras_forward(float32)))
