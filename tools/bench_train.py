"""Training-step benchmark: images per second per model, size and precision policy.

For each model at each size and dtype policy, trains a few steps twice: fed by
the trainer's real input pipeline (mammo_train.data.train_batches, full
augmentation) and by one batch repeated from memory. Their ratio says whether
the input pipeline is the bottleneck (it must not be: ratio ~1). Runs on CPU
or GPU; on a GPU, mixed_float16 is the one that matters.

  python tools/bench_train.py                                   # all, slow on CPU
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
  """Keras callback timing the training steps after the warm-up ones, in one fit call."""

  def __new__(cls, warmup: int):
    import keras  # pylint: disable=import-outside-toplevel

    class _Clock(keras.callbacks.Callback):

      def __init__(self):
        super().__init__()
        self.start = self.end = None

      def on_train_batch_end(self, batch, logs=None):
        if batch == warmup - 1:
          self.start = time.perf_counter()
        self.end = time.perf_counter()

      @property
      def seconds(self):
        return self.end - self.start

    return _Clock()


def measure(builder, model_name: str, size: int, policy: str, batch: int, steps: int, from_memory: bool) -> float:
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from mammo_train import data, models, train  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(policy)
  classes = data.num_classes(builder)
  model = models.build(model_name, size, classes, "none", dropout=0.5, l2=1e-4)
  models.set_fine_tune(model, None)
  train.compile_model(model, classes, 1e-3)
  batches = data.train_batches(builder, image_size=size, global_batch_size=batch, augmentation=data.Augmentation(),
                               oversample=False, cache=True, seed=0, deterministic=False)
  if from_memory:
    images, targets = next(iter(batches))
    batches = tf.data.Dataset.from_tensors((images, targets)).repeat()
  clock = StepClock(warmup=WARMUP_STEPS)
  model.fit(batches, steps_per_epoch=WARMUP_STEPS + steps, epochs=1, verbose=0, callbacks=[clock])
  keras.backend.clear_session()
  return steps * batch / clock.seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", help="TFDS data dir with synthetic/600 (built there if missing)")
  parser.add_argument("--models", default="cnn,resnet50,vgg16,inceptionv3")
  parser.add_argument("--sizes", default="224,600")
  parser.add_argument("--policies", default="float32,mixed_float16,mixed_bfloat16")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()

  from mammo_train import data  # pylint: disable=import-outside-toplevel
  builder = data.load_builder("synthetic", bench_common.ensure_synthetic(args.data_dir))
  rows = []
  for model_name in args.models.split(","):
    for size in (int(s) for s in args.sizes.split(",")):
      baseline = None
      for policy in args.policies.split(","):
        real = measure(builder, model_name, size, policy, args.batch_size, args.steps, from_memory=False)
        memory = measure(builder, model_name, size, policy, args.batch_size, args.steps, from_memory=True)
        baseline = baseline or real
        rows.append([f"{model_name} {size}px {policy}", real,
                     f"img/s; in-memory {memory:.2f}; pipeline/in-memory {real / memory:.2f}; "
                     f"vs float32 {real / baseline:.2f}x"])
        print(rows[-1], flush=True, file=sys.stderr)
  bench_common.emit("bench_train: training images per second", rows, args.json,
                    {"batch_size": args.batch_size, "steps": args.steps})


if __name__ == "__main__":
  main()
