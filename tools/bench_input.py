"""Input pipeline benchmark: the trainer's tf.data pipeline vs the decode limit and a naive pipeline.

Images per second delivered ready for the model (decoded, augmented, batched),
all measured in one run on one machine, so the ratios hold even where the
absolute figures are noisy:

  decode limit, 1 thread / all cores  bare TFRecord read + PNG decode
  trainer, flips only / full aug      mammo_train.inputs.data.train_batches, not cached
  naive, full aug                     per-image PNG files read with Pillow,
                                      augmented with scipy.ndimage, stacked

Targets on 2 cores: flips only >= 0.8 x the all-cores decode limit; full
augmentation >= 5 x the naive pipeline.

  python tools/bench_input.py [--data_dir=DIR] [--images=1024] [--json]
"""
import argparse
import os
import pathlib
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import bench_common  # pylint: disable=wrong-import-position

import numpy as np  # pylint: disable=wrong-import-position


def decode_limit(builder, images: int, threads: int | None):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  options = tf.data.Options()
  if threads:
    options.threading.private_threadpool_size = threads
  parallel = threads or tf.data.AUTOTUNE
  read_config = tfds.ReadConfig(try_autocache=False, interleave_cycle_length=4,
                                num_parallel_calls_for_interleave_files=parallel,
                                num_parallel_calls_for_decode=parallel, options=options)
  dataset = (builder.as_dataset(split="train", shuffle_files=True, read_config=read_config,
                                decoders={"image": tfds.decode.SkipDecoding()})
             .repeat()
             .map(lambda ex: tf.io.decode_png(ex["image"], channels=1), num_parallel_calls=parallel)
             .take(images))

  def run():
    for _ in dataset:
      pass
  return run


def trainer_pipeline(builder, images: int, batch: int, augmentation):
  from mammo_train.inputs import data  # pylint: disable=import-outside-toplevel
  size = builder.info.features["image"].shape[0]
  batches = data.train_batches(builder, image_size=size, batch_size=batch, augmentation=augmentation,
                               oversample=False, cache=False, seed=0, deterministic=False)
  iterator = iter(batches)
  next(iterator)  # warm up: graph tracing and the shuffle buffer's first fill

  def run():
    for _ in range(images // batch):
      next(iterator)
  return run


def export_pngs(builder, folder: pathlib.Path, count: int) -> list:
  """Writes `count` training images as PNG files, as the original work kept them (untimed)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  paths = []
  for index, example in enumerate(tfds.as_numpy(builder.as_dataset(split="train").take(count))):
    path = folder / f"{index:05d}.png"
    Image.fromarray(example["image"][:, :, 0]).save(path)
    paths.append(path)
  return paths


def naive_pipeline(paths: list, images: int, batch: int, rotation=10.0, zoom=0.1, shift=0.05):
  """The original work's way: read each file in Python, augment it with scipy, stack a batch."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)

  def one(path):
    image = np.asarray(Image.open(path), dtype=np.float32)
    size = image.shape[0]
    if rng.random() < 0.5:
      image = image[::-1]
    image = ndimage.rotate(image, rng.uniform(-rotation, rotation), reshape=False, order=1)
    factor = 1 + rng.uniform(-zoom, zoom)
    zoomed = ndimage.zoom(image, factor, order=1)
    canvas = np.zeros_like(image)
    n = min(size, zoomed.shape[0])
    canvas[:n, :n] = zoomed[:n, :n]
    return ndimage.shift(canvas, rng.uniform(-shift, shift, 2) * size, order=1)[..., None]

  def run():
    for start in range(0, images, batch):
      np.stack([one(paths[(start + i) % len(paths)]) for i in range(batch)])
  return run


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data_dir", help="TFDS data dir with synthetic/600 (built there if missing)")
  parser.add_argument("--dataset", default="synthetic", help="any prepared mammo dataset")
  parser.add_argument("--images", type=int, default=1024, help="images per measurement")
  parser.add_argument("--naive_images", type=int, default=128, help="images for the (slow) naive pipeline")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
  args = parser.parse_args()

  from mammo_train.inputs import augmentations, data  # pylint: disable=import-outside-toplevel
  data_dir = bench_common.ensure_synthetic(args.data_dir) if args.dataset == "synthetic" else args.data_dir
  builder = data.load_builder(args.dataset, data_dir)
  flips = augmentations.Augmentation(flip=True, rotation=0.0, zoom=0.0, shift=0.0)
  full = augmentations.Augmentation()
  figures = {
      "decode limit, 1 thread": bench_common.rate(decode_limit(builder, args.images, 1), args.images),
      "decode limit, all cores": bench_common.rate(decode_limit(builder, args.images, None), args.images),
      "trainer, flips only": bench_common.rate(trainer_pipeline(builder, args.images, args.batch_size, flips),
                                               args.images),
      "trainer, full augmentation": bench_common.rate(
          trainer_pipeline(builder, args.images, args.batch_size, full), args.images),
  }
  with tempfile.TemporaryDirectory() as folder:
    paths = export_pngs(builder, pathlib.Path(folder), min(args.naive_images, 256))
    figures["naive (PIL + scipy), full augmentation"] = bench_common.rate(
        naive_pipeline(paths, args.naive_images, args.batch_size), args.naive_images)
  flips_ratio = figures["trainer, flips only"] / figures["decode limit, all cores"]
  full_ratio = figures["trainer, full augmentation"] / figures["naive (PIL + scipy), full augmentation"]
  size = builder.info.features["image"].shape[0]
  rows = [[name, value, f"img/s at {size}x{size}"] for name, value in figures.items()]
  rows += [["flips only / decode limit (all cores)", flips_ratio, "target >= 0.8"],
           ["full augmentation / naive", full_ratio, "target >= 5"]]
  bench_common.emit("bench_input: images per second ready for the model", rows, args.json,
                    {"dataset": builder.info.full_name})


if __name__ == "__main__":
  main()
