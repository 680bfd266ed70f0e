"""Serving-speed benchmark of the exports: Keras, SavedModel, TFLite float32 and int8, ONNX Runtime.

For each model it makes the exports with mammo_train.export (untrained weights: speed does not depend
on them), then times each runtime at batch 1 and 32 on random uint8 images: images per second, and
p50 / p95 latency of one call, each row also as a ratio to Keras measured in the same run (at batch
32 a 3 s budget is 3-5 calls, so p95 there is nearly the slowest call). All
runtimes use every core (TFLite is told to; TensorFlow and ONNX Runtime do by default).

  python tools/bench_export.py                           # cnn at 600 px, resnet50 at 160 px: ~5 min on 2 busy
                                                         # cores, ~1 min of it making resnet50's exports
  python tools/bench_export.py --models=resnet50:224     # ~4 min on 2 busy cores
  python tools/bench_export.py --models=cnn:600 --budget=2 --json
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # pylint: disable=wrong-import-position

BATCHES = (1, 32)
WARMUP_CALLS = 2


def runners(model, folder: pathlib.Path) -> dict:
  """Runtime name -> fn(images) for the model and its exports in `folder`."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import onnxruntime  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  serve = tf.saved_model.load(str(folder / "saved_model")).signatures["serving_default"]

  def tflite(path):
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner("serving_default")
    return lambda images: runner(image=images)

  session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
  return {
      "keras": lambda images: model.predict_on_batch(images),
      "saved_model": lambda images: serve(image=tf.constant(images)),
      "tflite_float32": tflite(folder / "model_float32.tflite"),
      "tflite_int8": tflite(folder / "model_int8.tflite"),
      "onnxruntime": lambda images: session.run(None, {"image": np.asarray(images)}),
  }


def latencies(fn, images, budget_s: float, min_calls: int = 3) -> list[float]:
  """Seconds per call of fn(images), after warm-up, over about `budget_s` (at least `min_calls`)."""
  for _ in range(WARMUP_CALLS):
    fn(images)
  times, start = [], time.perf_counter()
  while len(times) < min_calls or time.perf_counter() - start < budget_s:
    begin = time.perf_counter()
    fn(images)
    times.append(time.perf_counter() - begin)
  return times


def bench_model(name: str, size: int, budget_s: float) -> tuple[list, dict]:
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from mammo_train.deployment import serving_graph  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel

  keras.utils.set_random_seed(0)
  model = classifiers.build(name, size, 2, "none", 0.0, 0.0)
  rows, sizes = [], {}
  with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
    folder = pathlib.Path(scratch)
    serving = serving_graph.Serving(model)
    start = time.perf_counter()
    serving_graph.save_saved_model(serving, folder / "saved_model")
    serving_graph.save_tflite(folder / "saved_model", folder / "model_float32.tflite", folder / "model_int8.tflite")
    serving_graph.save_onnx(serving, folder / "model.onnx")
    convert_s = time.perf_counter() - start
    for item in sorted(folder.iterdir()):
      sizes[item.name] = sum(f.stat().st_size for f in item.rglob("*")) if item.is_dir() else item.stat().st_size
    runs = runners(model, folder)
    images = {batch: np.random.default_rng(0).integers(0, 256, (batch, size, size, 1), dtype=np.uint8)
              for batch in BATCHES}
    for batch in BATCHES:
      keras_rate = None
      for runtime, fn in runs.items():
        times = np.asarray(latencies(fn, images[batch], budget_s))
        per_second = batch / times.mean()
        keras_rate = keras_rate or per_second
        rows.append([f"{name} {size}px batch {batch} {runtime}", float(per_second),
                     f"img/s  x{per_second / keras_rate:.2f} Keras  p50 {1000 * np.median(times):.1f} ms  "
                     f"p95 {1000 * np.percentile(times, 95):.1f} ms  ({len(times)} calls)"])
  return rows, {"sizes_bytes": sizes, "export_seconds": round(convert_s, 1),
                "parameters": model.count_params()}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="cnn:600,resnet50:160",
                      help="comma-separated MODEL:SIZE (models of mammo_train.models.classifiers, weights none)")
  parser.add_argument("--budget", type=float, default=3.0, help="seconds timed per runtime and batch size")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  rows, extra = [], {}
  for spec in args.models.split(","):
    name, _, size = spec.partition(":")
    if not size.isdigit():
      parser.error(f"--models: {spec!r} is not MODEL:SIZE")
    model_rows, info = bench_model(name, int(size), args.budget)
    rows += model_rows
    extra[f"{name}:{size}"] = info
  bench_common.emit("Export serving speed (ratio: images/s over Keras's, same batch, same run)", rows,
                    args.json, {"models": extra})
  if not args.json:
    for spec, info in extra.items():
      print(f"  {spec}: {info['parameters']:,} parameters, exports made in {info['export_seconds']} s; sizes "
            + ", ".join(f"{file} {size / 1e6:.2f} MB" for file, size in info["sizes_bytes"].items()))


if __name__ == "__main__":
  main()
