"""Training-step benchmark: images per second per model, size and precision policy.

For each model at each size and dtype policy, trains a few steps twice: fed by
the trainer's real input pipeline (mammo_train.inputs.data.train_batches, full
augmentation) and by one batch repeated from memory. Their ratio says whether
the input pipeline is the bottleneck (it must not be: ratio ~1). Runs on CPU
or GPU; on a GPU, mixed_float16 is the one that matters.

  python tools/bench_train.py            # every model, size and policy: hours on 2 cores (emulated
                                         # mixed precision); docs/performance.md's CPU table took 47 min without
                                         # VGG16 / InceptionV3 at 600 px mixed
  python tools/bench_train.py --models=cnn,resnet50 --sizes=224 --policies=float32,mixed_bfloat16
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # pylint: disable=wrong-import-position


WARMUP_STEPS = 2  # tracing, the shuffle buffer's first fill, caches


class StepClock:
  """Keras callback timing the steps after the warm-up ones, in one fit call.

  It ends the fit once `min_steps` steps are timed and `max_seconds` have
  passed, so a slow case (VGG16 at 224 px in bfloat16 on a CPU without
  bfloat16 instructions: about a minute a step of 4) costs a few steps while a
  fast one is timed over many.
  """

  def __new__(cls, warmup: int, min_steps: int, max_seconds: float):
    import keras  # pylint: disable=import-outside-toplevel

    class _Clock(keras.callbacks.Callback):

      def __init__(self):
        super().__init__()
        self.start = self.end = None
        self.steps = 0

      def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if batch == warmup - 1:
          self.start = now
        elif batch >= warmup:
          self.steps, self.end = batch - warmup + 1, now
          if self.steps >= min_steps and now - self.start >= max_seconds:
            self.model.stop_training = True

      @property
      def seconds(self):
        return self.end - self.start

    return _Clock()


def timed_fit(model, batches, warmup: int, args) -> tuple:
  """(images per second, timed steps) of fitting `model` on `batches` of `args.batch_size`."""
  clock = StepClock(warmup, args.min_steps, args.max_seconds)
  model.fit(batches, steps_per_epoch=warmup + args.steps, epochs=1, verbose=0, callbacks=[clock])
  return clock.steps * args.batch_size / clock.seconds, clock.steps


def measure(builder, model_name: str, size: int, policy: str, args) -> dict:
  """One model, size and policy: fed by the real pipeline, then by one batch from memory.

  Both fits use the same compiled model, so the second reuses the first's
  traced step and needs one warm-up step only (its iterator's first batch).
  """
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mammo_train.inputs import augmentations, data  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(policy)
  classes = data.num_classes(builder)
  model = classifiers.build(model_name, size, classes, "none", dropout=0.5, l2=1e-4)
  classifiers.set_fine_tune(model, None)
  classifiers.compile(model, classes, 1e-3)
  batches = data.train_batches(builder, image_size=size, batch_size=args.batch_size,
                               augmentation=augmentations.Augmentation(), oversample=False, cache=True, seed=0,
                               deterministic=False)
  pipeline, pipeline_steps = timed_fit(model, batches, WARMUP_STEPS, args)
  images, targets = next(iter(batches))
  repeated = tf.data.Dataset.from_tensors((images, targets)).repeat()
  memory, memory_steps = timed_fit(model, repeated, 1, args)
  keras.backend.clear_session()
  keras.mixed_precision.set_global_policy("float32")
  return {"model": model_name, "size": size, "policy": policy, "pipeline": pipeline, "memory": memory,
          "steps": min(pipeline_steps, memory_steps)}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", help="TFDS data dir with synthetic/CONFIG (built there if missing)")
  parser.add_argument("--config", default="600", help="synthetic config the images come from (tiny: a smoke run)")
  parser.add_argument("--models", default="cnn,resnet50,vgg16,inceptionv3")
  parser.add_argument("--sizes", default="224,600")
  parser.add_argument("--policies", default="float32,mixed_float16,mixed_bfloat16")
  parser.add_argument("--batch_size", type=int, default=4)
  parser.add_argument("--steps", type=int, default=20, help="most timed steps per measurement")
  parser.add_argument("--min_steps", type=int, default=2, help="fewest timed steps per measurement")
  parser.add_argument("--max_seconds", type=float, default=20.0,
                      help="stop timing a measurement after this long, once --min_steps are done")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()

  from mammo_train.inputs import data  # pylint: disable=import-outside-toplevel
  builder = data.load_builder(f"synthetic/{args.config}", bench_common.ensure_synthetic(args.data_dir, args.config))
  rows, results = [], []
  for model_name in args.models.split(","):
    for size in (int(s) for s in args.sizes.split(",")):
      float32 = None
      for policy in args.policies.split(","):
        result = measure(builder, model_name, size, policy, args)
        results.append(result)
        float32 = float32 or (result["pipeline"] if policy == "float32" else None)
        versus = f"; vs float32 {result['pipeline'] / float32:.2f}x" if float32 else ""
        rows.append([f"{model_name} {size}px {policy}", result["pipeline"],
                     f"img/s; in-memory {result['memory']:.2f}; pipeline/in-memory "
                     f"{result['pipeline'] / result['memory']:.2f}{versus}; {result['steps']} steps"])
        print(rows[-1], flush=True, file=sys.stderr)
  bench_common.emit(f"bench_train: training images per second, batch {args.batch_size}", rows, args.json,
                    {"batch_size": args.batch_size, "results": results})


if __name__ == "__main__":
  main()
