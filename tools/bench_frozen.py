"""Frozen-backbone benchmark: head training on cached features vs a plain fit that reruns the backbone.

On the synthetic dataset at the stored 600x600, with a frozen ResNet50
(random weights: ImageNet ones cannot be downloaded here; the cost is the
same), in one run:

  cached  feature_cache.compute (the backbone once per training image and
          view, once per validation image) + 60 epochs of head training
  plain   model.fit for --plain_epochs epochs with the backbone in the loop,
          its per-epoch time extrapolated to 60 epochs

and the validation AUC of each after the same number of epochs. Target: at
60 epochs the cached path is >= 20x faster with no loss of AUC beyond noise.

  python tools/bench_frozen.py [--image_size=600] [--views=2] [--json]
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # pylint: disable=wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", help="TFDS data dir with synthetic/600 (built there if missing)")
  parser.add_argument("--image_size", type=int, default=600)
  parser.add_argument("--model", default="resnet50")
  parser.add_argument("--views", type=int, default=2, help="augmented views per training image in the cache")
  parser.add_argument("--epochs", type=int, default=60)
  parser.add_argument("--plain_epochs", type=int, default=2)
  parser.add_argument("--batch_size", type=int, default=16)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()

  import keras  # pylint: disable=import-outside-toplevel
  from mammo_train.inputs import data, feature_cache  # pylint: disable=import-outside-toplevel
  from mammo_train.models import classifiers  # pylint: disable=import-outside-toplevel
  builder = data.load_builder("synthetic", bench_common.ensure_synthetic(args.data_dir))
  classes, size, batch = data.num_classes(builder), args.image_size, args.batch_size
  steps = data.steps_per_epoch(builder, batch)
  augmentation = data.Augmentation()

  def fresh_model():
    keras.utils.set_random_seed(0)
    model = classifiers.build(args.model, size, classes, "none", dropout=0.5, l2=1e-4)
    classifiers.set_fine_tune(model, 0)
    classifiers.compile(model, classes, 1e-3)
    return model

  model = fresh_model()
  batches = data.train_batches(builder, image_size=size, global_batch_size=batch, augmentation=augmentation,
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
    folder = feature_cache.compute(root, builder, extractor, size, batch, augmentation, args.views, seed=0)
    compute_seconds = time.perf_counter() - start
    head_batches = feature_cache.train_batches(folder, classes, batch, oversample=True, seed=0)
    head_validation = feature_cache.validation_batches(folder, classes, batch)
    start = time.perf_counter()
    history = head.fit(head_batches, epochs=args.epochs, steps_per_epoch=steps, validation_data=head_validation,
                       verbose=0)
    head_seconds = time.perf_counter() - start
  cached_total = compute_seconds + head_seconds
  cached_auc_same = history.history["val_auc"][args.plain_epochs - 1]
  plain_total = plain_epoch * args.epochs
  rows = [
      [f"plain fit, s/epoch ({args.plain_epochs} measured)", plain_epoch, "backbone recomputed every epoch"],
      [f"plain fit, {args.epochs} epochs (extrapolated)", plain_total, "s"],
      [f"cached: features ({args.views} views + validation)", compute_seconds, "s, once"],
      [f"cached: head, {args.epochs} epochs", head_seconds, "s"],
      [f"cached total, {args.epochs} epochs", cached_total, "s"],
      [f"speed-up at {args.epochs} epochs", plain_total / cached_total, "target >= 20"],
      [f"val AUC after {args.plain_epochs} epochs: plain", plain_auc, ""],
      [f"val AUC after {args.plain_epochs} epochs: cached", cached_auc_same, ""],
      [f"val AUC after {args.epochs} epochs: cached", history.history["val_auc"][-1], ""],
  ]
  bench_common.emit(f"bench_frozen: frozen {args.model} at {size}x{size}, synthetic", rows, args.json,
                    {"train_images": data.num_examples(builder, "train"), "batch_size": batch})


if __name__ == "__main__":
  main()
