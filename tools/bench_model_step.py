"""Model-step benchmark: training-step and predict images/s of this package's models, and achieved TFLOP/s.

For each model (cnn, resnet50, vgg16, inceptionv3), side (224, 600) and
dtype policy (float32 and the device's mixed one), on the current Keras
backend (TensorFlow here; JAX on the GPU machine, which has no TensorFlow:
this script imports only Keras and builds the models with
`mammo_train.models.classifiers.build`, weights none):

- data resident: one batch converted to a backend tensor once, reused;
- warm-up excluded: --warmup calls (tracing / compilation) before timing;
- timed: `train_on_batch` and `predict_on_batch` calls until --steps are done
  or --max_seconds have passed (at least one);
- FLOPs per image counted from the layers: 2 x multiply-adds of every
  Conv2D / DepthwiseConv2D / Dense (nested models included; BatchNorm,
  activations, pooling left out: under 1% for these networks); a training
  step counted as 3 x the forward pass (forward + gradients of activations
  and of weights), the usual estimate;
- achieved TFLOP/s against --peak_tflops (default: the device's known peak
  for the mixed policy, H200 bf16 ~790 measured; "unknown" on a CPU).

  python tools/bench_model_step.py                         # everything: hours on 2 CPU cores
  python tools/bench_model_step.py --models=resnet50 --sizes=600 --batch_size=64   # on the GPU machine
  python tools/bench_model_step.py --models=cnn --sizes=32 --policies=float32 --steps=1 --warmup=1  # smoke

On the GPU machine (no TensorFlow): `mammo_train.models.classifiers` is
Keras-only, and this script imports nothing else of mammo_train (not
`mammo_train.config`, which reaches TensorFlow through `inputs.data`).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bench_common  # pylint: disable=wrong-import-position

# Dense peak TFLOP/s of a GPU (by a name nvidia-smi gives) in its mixed policy, measured (DESIGN.md).
KNOWN_PEAKS = {"H200": 790.0}
MIXED = {"gpu": "mixed_bfloat16", "cpu": "mixed_bfloat16"}
TRAIN_FLOPS_FACTOR = 3


def forward_flops(model) -> int:
  """FLOPs of one image's forward pass: 2 x the multiply-adds of the conv and dense layers, nested models included."""
  import keras  # pylint: disable=import-outside-toplevel
  total = 0
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      total += forward_flops(layer)
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
      kernel = layer.kernel.shape  # (kh, kw, in / groups or 1, out or multiplier)
      height, width, channels = layer.output.shape[1:]
      per_output = kernel[0] * kernel[1] * (kernel[2] if isinstance(layer, keras.layers.Conv2D) else 1)
      total += 2 * per_output * height * width * channels
    elif isinstance(layer, keras.layers.Dense):
      total += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
  return int(total)


def device() -> tuple:
  """(kind 'gpu' or 'cpu', a name) of the device Keras runs on."""
  import keras  # pylint: disable=import-outside-toplevel
  devices = keras.distribution.list_devices() if keras.backend.backend() == "jax" else []
  if any(d.lower().startswith(("gpu", "cuda")) for d in devices) or (
      keras.backend.backend() != "jax" and shutil.which("nvidia-smi")):
    try:
      name = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                            text=True, check=True, timeout=30).stdout.splitlines()[0].strip()
      return "gpu", name
    except (OSError, subprocess.SubprocessError, IndexError):
      pass
  return "cpu", bench_common.machine()


def peak(kind: str, name: str, policy: str, given: str | None) -> float | None:
  if given:
    return None if given == "unknown" else float(given)
  if kind == "gpu" and policy.startswith("mixed"):
    return next((value for gpu, value in KNOWN_PEAKS.items() if gpu in name), None)
  return None


def timed(call, warmup: int, steps: int, max_seconds: float) -> tuple:
  """(seconds per call, calls timed) after `warmup` untimed calls."""
  for _ in range(warmup):
    call()
  start, calls = time.perf_counter(), 0
  while calls < steps and (calls == 0 or time.perf_counter() - start < max_seconds):
    call()
    calls += 1
  return (time.perf_counter() - start) / calls, calls


def measure(name: str, size: int, policy: str, args) -> dict:
  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(policy)
  keras.utils.set_random_seed(0)
  model = classifiers.build(name, size, 2, "none", dropout=0.5, l2=1e-4)
  classifiers.set_fine_tune(model, None)
  classifiers.compile(model, 2, 1e-3)
  rng = np.random.default_rng(0)
  images = keras.ops.convert_to_tensor(rng.integers(0, 256, (args.batch_size, size, size, 1), dtype=np.uint8))
  labels = keras.ops.convert_to_tensor(rng.integers(0, 2, (args.batch_size, 1)).astype(np.float32))
  train, train_calls = timed(lambda: model.train_on_batch(images, labels), args.warmup, args.steps, args.max_seconds)
  predict, predict_calls = timed(lambda: model.predict_on_batch(images), args.warmup, args.steps, args.max_seconds)
  flops = forward_flops(model)
  keras.backend.clear_session()
  keras.mixed_precision.set_global_policy("float32")
  return {"model": name, "size": size, "policy": policy, "gflop_forward": flops / 1e9,
          "train_images_s": args.batch_size / train, "predict_images_s": args.batch_size / predict,
          "train_tflops": TRAIN_FLOPS_FACTOR * flops * args.batch_size / train / 1e12,
          "predict_tflops": flops * args.batch_size / predict / 1e12, "calls": min(train_calls, predict_calls)}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="cnn,resnet50,vgg16,inceptionv3")
  parser.add_argument("--sizes", default="224,600")
  parser.add_argument("--policies", default=None, help="comma-separated (default: float32 and the device's mixed)")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (tracing, compilation)")
  parser.add_argument("--steps", type=int, default=10, help="most timed calls per measurement")
  parser.add_argument("--max_seconds", type=float, default=20.0, help="stop timing after this long (>= 1 call)")
  parser.add_argument("--peak_tflops", default=None, help="the device's peak, or 'unknown' (default: known table)")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  names = args.models.split(",")
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  known = ("cnn", *classifiers.BACKBONES)
  if any(name not in known for name in names):
    parser.error(f"--models: each must be one of {', '.join(known)}")
  try:
    sizes = [int(size) for size in args.sizes.split(",")]
    given_peak = None if args.peak_tflops in (None, "unknown") else float(args.peak_tflops)
  except ValueError:
    parser.error("--sizes takes whole numbers and --peak_tflops a number or 'unknown'")
  if min(args.batch_size, args.steps, min(sizes)) < 1 or args.warmup < 0 or (given_peak is not None and given_peak <= 0):
    parser.error("--batch_size, --steps and --sizes must be at least 1, --warmup at least 0, --peak_tflops positive")

  import keras  # pylint: disable=import-outside-toplevel
  kind, device_name = device()
  policies = args.policies.split(",") if args.policies else ["float32", MIXED[kind]]
  rows, results = [], []
  for name in names:
    for size in sizes:
      for policy in policies:
        result = measure(name, size, policy, args)
        results.append(result)
        top = peak(kind, device_name, policy, args.peak_tflops)
        share = "peak unknown" if top is None else f"{100 * result['train_tflops'] / top:.1f}% / " \
                                                   f"{100 * result['predict_tflops'] / top:.1f}% of {top:g}"
        rows.append([f"{name} {size}px {policy}: train img/s", result["train_images_s"],
                     f"{result['train_tflops']:.3f} TFLOP/s ({TRAIN_FLOPS_FACTOR} x {result['gflop_forward']:.2f} "
                     f"GFLOP/img)"])
        rows.append([f"{name} {size}px {policy}: predict img/s", result["predict_images_s"],
                     f"{result['predict_tflops']:.3f} TFLOP/s; train / predict {share}; {result['calls']} calls"])
  bench_common.emit(f"bench_model_step: Keras {keras.__version__} on {keras.backend.backend()}, {kind} "
                    f"({device_name}), batch {args.batch_size}, data resident", rows, args.json,
                    {"results": results, "device": device_name})


if __name__ == "__main__":
  main()
