"""Frozen-backbone benchmark: the feature cache's backbone pass per runtime, and a CMMD-size run's total.

With the feature cache a frozen-backbone run costs one backbone pass per
training image and view (and per validation image), then cheap head epochs.
This measures, in one run, on synthetic images at --image_size (ResNet50,
random weights: ImageNet ones cannot be downloaded here; the cost is the
same):

  per runtime   backbone features per second (Keras and every installed
                runtime of `mammo_train.inference.runtimes`, converted and
                checked against Keras first, timed interleaved, best of
                --repeats: a shared machine only ever adds time); beside
                them Keras under the policy --precision=auto picks, where
                that is not float32 (mixed_bfloat16 on a CPU with bfloat16
                instructions, where --runtime=auto takes openvino_bf16)
  head          one epoch of head training at CMMD size (--train_images
                features per epoch, --validation_images validated), on a
                cache of random features of the backbone's width
  total         per runtime: (train_images x views + validation_images) /
                rate + epochs x head epoch: a CMMD-size run from scratch
                (target: under 45 minutes on 2 cores)

CMMD size: 2,620 training and 562 validation images (the 3,744 labelled
images split 70/15/15 by patient). --compare_plain adds the earlier
comparison: a plain `model.fit` that reruns the backbone every epoch against
the cache, with the validation AUC of each (slow: hours at 600 px).

  python tools/bench_frozen.py [--image_size=600] [--images=32] [--repeats=2] [--json]
  python tools/bench_frozen.py --config=tiny --image_size=32 --images=8 --repeats=1   # smoke
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # pylint: disable=wrong-import-position

CMMD_TRAIN, CMMD_VALIDATION = 2620, 562


def runtime_rates(forwards: dict, images, batch: int, repeats: int) -> dict:
  """Images per second of each backbone pass (name -> forward) over `images`, interleaved, best of `repeats`."""
  for forward in forwards.values():
    forward(images[:batch])  # conversion check, tracing, first compilation: not timed
  seconds = {name: float("inf") for name in forwards}
  for _ in range(repeats):
    for name, forward in forwards.items():
      start = time.perf_counter()
      for first in range(0, len(images), batch):
        forward(images[first:first + batch])
      seconds[name] = min(seconds[name], time.perf_counter() - start)
  return {name: len(images) / seconds[name] for name in forwards}


def auto_policy_forward(fresh_model):
  """(name, forward) of Keras under the policy --precision=auto picks here, when that is not float32 (a CPU
  with bfloat16 instructions: mixed_bfloat16, which openvino_bf16 is measured against), else None."""
  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.inference import runtimes  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  from mammo_train.training import runtime  # pylint: disable=import-outside-toplevel
  policy = runtime.resolve_precision("auto")
  if policy == "float32":
    return None
  keras.mixed_precision.set_global_policy(policy)
  try:
    extractor, _ = classifiers.split_head(fresh_model())
  finally:
    keras.mixed_precision.set_global_policy("float32")
  return f"keras {policy} (--precision=auto)", runtimes.keras_forward(extractor)


def head_epoch_seconds(head, width: int, classes: int, batch: int, train: int, validation: int, views: int) -> float:
  """One epoch of head training on a CMMD-size cache of random features (a warm-up epoch first)."""
  from mammo_train.inputs import feature_cache  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  with tempfile.TemporaryDirectory() as folder:
    for view in range(views):
      np.save(os.path.join(folder, f"train_view{view}.npy"), rng.random((train, width), np.float32))
    np.save(os.path.join(folder, "train_labels.npy"), rng.integers(0, classes, train))
    np.save(os.path.join(folder, "validation.npy"), rng.random((validation, width), np.float32))
    np.save(os.path.join(folder, "validation_labels.npy"), rng.integers(0, classes, validation))
    with open(os.path.join(folder, feature_cache.KEY_FILE), "w") as f:
      json.dump({"views": views, "share": [0, 1]}, f)  # the whole training split (feature_cache.cache_key)
    batches = feature_cache.train_batches(folder, classes, batch, oversample=True, seed=0)
    validation_batches = feature_cache.validation_batches(folder, classes, batch)
    head.fit(batches, epochs=1, steps_per_epoch=train // batch, validation_data=validation_batches, verbose=0)
    start = time.perf_counter()
    head.fit(batches, epochs=1, steps_per_epoch=train // batch, validation_data=validation_batches, verbose=0)
    return time.perf_counter() - start


def compare_plain(args, builder, fresh_model) -> list:
  """Rows of the plain fit (backbone every epoch) against the cached path, with validation AUCs."""
  from mammo_train.inputs import augmentations, data, feature_cache  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  classes, size, batch = data.num_classes(builder), args.image_size, args.batch_size
  steps = data.steps_per_epoch(builder, batch)
  augmentation = augmentations.Augmentation()
  model = fresh_model()
  batches = data.train_batches(builder, image_size=size, batch_size=batch, augmentation=augmentation,
                               oversample=True, cache=True, seed=0, deterministic=False)
  validation = data.validation_batches(builder, image_size=size, global_batch_size=batch, cache=True)
  start = time.perf_counter()
  history = model.fit(batches, epochs=args.plain_epochs, steps_per_epoch=steps, validation_data=validation,
                      verbose=0)
  plain_epoch = (time.perf_counter() - start) / args.plain_epochs
  plain_auc = history.history["val_auc"][-1]
  model = fresh_model()
  extractor, head = classifiers.split_head(model)
  classifiers.compile(head, classes, 1e-3)
  with tempfile.TemporaryDirectory() as root:
    start = time.perf_counter()
    folder = feature_cache.compute(root, builder, extractor, size, batch, augmentation, args.views, seed=0,
                                   runtime="keras")
    compute_seconds = time.perf_counter() - start
    start = time.perf_counter()
    history = head.fit(feature_cache.train_batches(folder, classes, batch, oversample=True, seed=0),
                       epochs=args.epochs, steps_per_epoch=steps,
                       validation_data=feature_cache.validation_batches(folder, classes, batch), verbose=0)
    head_seconds = time.perf_counter() - start
  cached_total, plain_total = compute_seconds + head_seconds, plain_epoch * args.epochs
  return [
      [f"plain fit, s/epoch ({args.plain_epochs} measured)", plain_epoch, "backbone recomputed every epoch"],
      [f"plain fit, {args.epochs} epochs (extrapolated)", plain_total, "s"],
      [f"cached (keras): features ({args.views} views + validation)", compute_seconds, "s, once"],
      [f"cached: head, {args.epochs} epochs", head_seconds, "s"],
      [f"speed-up at {args.epochs} epochs", plain_total / (cached_total), "target >= 20"],
      [f"val AUC after {args.plain_epochs} epochs: plain", plain_auc, ""],
      [f"val AUC after {args.plain_epochs} epochs: cached", history.history["val_auc"][args.plain_epochs - 1], ""],
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", help="TFDS data dir with synthetic/CONFIG (built there if missing)")
  parser.add_argument("--config", default="600", help="synthetic config the images come from")
  parser.add_argument("--image_size", type=int, default=600)
  parser.add_argument("--model", default="resnet50")
  parser.add_argument("--images", type=int, default=32, help="images timed per runtime and repeat")
  parser.add_argument("--repeats", type=int, default=2, help="timings of each runtime; the fastest counts")
  parser.add_argument("--runtimes", default=None, help="comma-separated (default: keras and every installed one)")
  parser.add_argument("--views", type=int, default=2, help="augmented views per training image in the cache")
  parser.add_argument("--epochs", type=int, default=60)
  parser.add_argument("--train_images", type=int, default=CMMD_TRAIN)
  parser.add_argument("--validation_images", type=int, default=CMMD_VALIDATION)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--compare_plain", action="store_true", help="also the plain fit against the cache")
  parser.add_argument("--plain_epochs", type=int, default=2)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  names = bench_common.runtime_names(parser, args.runtimes)
  for name in ("images", "repeats", "views", "epochs", "train_images", "validation_images", "batch_size"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be at least 1")

  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.inputs import data  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  builder = data.load_builder(f"synthetic/{args.config}", bench_common.ensure_synthetic(args.data_dir, args.config))
  classes = data.num_classes(builder)

  def fresh_model():
    keras.utils.set_random_seed(0)
    model = classifiers.build(args.model, args.image_size, classes, "none", dropout=0.5, l2=1e-4)
    classifiers.set_fine_tune(model, 0)
    classifiers.compile(model, classes, 1e-3)
    return model

  extractor, head = classifiers.split_head(fresh_model())
  classifiers.compile(head, classes, 1e-3)
  images = np.concatenate([np.asarray(batch[0]) for batch in
                           data.eval_batches(builder, "train", args.image_size, args.batch_size)])
  images = np.resize(images, (args.images, *images.shape[1:]))  # repeated if the split is smaller
  from mammo_train.inference import runtimes  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as conversions:
    forwards = {name: runtimes.checked_forward(extractor, name, conversions) for name in names}
    auto = auto_policy_forward(fresh_model)
    if auto:
      forwards[auto[0]] = auto[1]
    rates = runtime_rates(forwards, images, args.batch_size, args.repeats)
  head_epoch = head_epoch_seconds(head, extractor.output_shape[-1], classes, args.batch_size, args.train_images,
                                  args.validation_images, args.views)
  passes = args.train_images * args.views + args.validation_images
  rows = []
  for name in rates:
    rows.append([f"{name}: backbone features", rates[name],
                 f"img/s ({args.images} images, batch {args.batch_size}); x{rates[name] / rates['keras']:.2f} keras"])
  rows.append(["head: one epoch at CMMD size", head_epoch,
               f"s ({args.train_images} features, {args.validation_images} validated)"])
  for name in rates:
    total = passes / rates[name] + args.epochs * head_epoch
    rows.append([f"{name}: {args.epochs}-epoch run, min (extrapolated)", total / 60,
                 f"{passes} backbone passes + {args.epochs} head epochs; target < 45"])
  if args.compare_plain:
    rows += compare_plain(args, builder, fresh_model)
  bench_common.emit(f"bench_frozen: frozen {args.model} at {args.image_size}x{args.image_size}, CMMD size", rows,
                    args.json, {"runtimes": names, "batch_size": args.batch_size, "views": args.views,
                                "load_average": os.getloadavg()})


if __name__ == "__main__":
  main()
