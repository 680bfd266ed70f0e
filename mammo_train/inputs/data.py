"""tf.data input pipelines over the prepared mammo TFDS datasets.

Datasets are read from their prepared files (`tfds.builder(name, data_dir)`),
never by importing the builder modules, so the trainer works wherever the
TFRecord shards are and the builders are never registered twice.

Evaluation streams (`eval_batches`) are deterministic and untouched: no
shuffle, augmentation or oversampling. The training stream (`train_batches`)
shuffles, augments with tf.image ops and, on request, oversamples the minority
classes, all on the fly: no augmented or duplicated image is ever written, and
nothing of the kind reaches validation or test.
"""
import dataclasses
import hashlib
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from mammo_train.inputs import augmentations

# The config each dataset is read with when the name gives none.
DEFAULT_CONFIGS = {"cbis_ddsm": "600", "cmmd": "600", "manifest": "600", "mias": "abnormal", "rsna_screening": "600",
                   "synthetic": "600"}
SPLITS = ("train", "validation", "test")
# Scalar metadata `split_metadata` returns when the dataset has it.
METADATA = ("label", "patient_id", "laterality", "view", "age")
_AUTOTUNE = tf.data.AUTOTUNE


class DatasetNotBuiltError(Exception):
  """The dataset's prepared files are not in the data dir."""


@dataclasses.dataclass(frozen=True)
class Selection:
  """Some patients of some splits, read wherever a split name is (a cross-validation fold's part).

  Folds are a view of the prepared records, not new TFRecords: the splits
  are read as they are and filtered on patient_id. `patients` None keeps
  every patient (e.g. the whole development data).
  """
  splits: tuple
  patients: frozenset | None
  name: str  # for logs and reports, e.g. "fold 2 of 5"

  def __str__(self) -> str:
    return self.name


@dataclasses.dataclass(frozen=True)
class Partition:
  """Which data plays each role of a run: trained on, model selection (best epoch, threshold,
  calibration), scored. Each is a split name or a `Selection`."""
  train: object = "train"
  validation: object = "validation"
  test: object = "test"


@dataclasses.dataclass(frozen=True)
class Share:
  """One input pipeline's part of a split: the `index`-th of `count` near-equal ranges of its examples.

  The ranges are contiguous in file order (`tfds.even_splits`), so a worker
  of a cluster reads, and decodes, only the records of its own range: input
  cost falls as workers are added. The shares of one split are disjoint and
  together cover it (`tests/test_data.py`).
  """
  index: int = 0
  count: int = 1

  def __post_init__(self):
    if not 0 <= self.index < self.count:
      raise ValueError(f"input share {self.index} of {self.count} does not exist")

  def of(self, split: str):
    """The TFDS split expression of this share of `split` ('train', or 'train+validation')."""
    return split if self.count == 1 else tfds.even_splits(split, self.count)[self.index]

  def seed(self, seed: int) -> int:
    """This share's random seed: the run's on one machine, a different one on each other worker, so the
    workers do not draw the same shuffles and augmentations for their different images."""
    return seed + 1_000_003 * self.index


WHOLE = Share()


def qualified_name(dataset: str) -> str:
  """'synthetic' -> 'synthetic/600': the name with its config made explicit.

  Raises:
    ValueError: the dataset is not one of the mammo datasets.
  """
  name, _, config = dataset.partition("/")
  if name not in DEFAULT_CONFIGS:
    raise ValueError(f"unknown dataset {dataset!r}: expected one of {', '.join(sorted(DEFAULT_CONFIGS))} "
                     "(optionally with a config, e.g. synthetic/tiny or mias/density)")
  return f"{name}/{config or DEFAULT_CONFIGS[name]}"


def load_builder(dataset: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared dataset ('synthetic', 'synthetic/tiny', 'mias/density', ...).

  Raises:
    ValueError: unknown dataset name.
    DatasetNotBuiltError: the dataset has not been built into `data_dir`; the
      message gives the command that builds it.
  """
  name = qualified_name(dataset)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    builder = None
  # Where the builder module is imported (registered), tfds.builder returns an
  # unprepared builder instead of raising: check for the prepared files too.
  if builder is None or not builder.is_prepared():
    folder, config = name.split("/")
    where = data_dir or tfds.core.constants.DATA_DIR
    raise DatasetNotBuiltError(
        f"dataset {name} is not built in {where}: build it with "
        f"`tfds build mammo_tfds/{folder} --config={config} --data_dir={where}`")
  return builder


def split_names(builder: tfds.core.DatasetBuilder, split) -> list[str]:
  """The TFDS splits behind `split` ('all' = every split, in a fixed order; a Selection's splits)."""
  if isinstance(split, Selection):
    return [name for part in split.splits for name in split_names(builder, part)]
  if split == "all":
    return [name for name in SPLITS if name in builder.info.splits]
  if split not in builder.info.splits:
    raise ValueError(f"{builder.info.full_name} has no split {split!r}: it has {', '.join(builder.info.splits)}")
  return [split]


def has_split(builder: tfds.core.DatasetBuilder, split) -> bool:
  """Whether the dataset holds `split` (a Selection: all of its splits)."""
  names = split.splits if isinstance(split, Selection) else [split]
  return all(name in builder.info.splits or name == "all" for name in names)


def num_examples(builder: tfds.core.DatasetBuilder, split) -> int:
  if isinstance(split, Selection) and split.patients is not None:
    return len(split_metadata(builder, split)["label"])
  return sum(builder.info.splits[name].num_examples for name in split_names(builder, split))


def num_classes(builder: tfds.core.DatasetBuilder) -> int:
  return builder.info.features["label"].num_classes


def _read(builder, split, *, shuffle: bool = False, seed: int = 0, decoders=None,
          deterministic: bool = True, share: Share = WHOLE) -> tf.data.Dataset:
  """Examples of `share` of `split`, read with interleaved parallel reads and parallel decoding.

  With shuffle=False the file order is fixed, and the interleave deterministic,
  so every read of a split yields the same examples in the same order: the
  order `eval_batches` and `split_metadata` agree on.
  """
  options = tf.data.Options()
  options.deterministic = deterministic
  read_config = tfds.ReadConfig(
      shuffle_seed=seed, interleave_cycle_length=4, num_parallel_calls_for_interleave_files=_AUTOTUNE,
      num_parallel_calls_for_decode=_AUTOTUNE, try_autocache=False, options=options)
  examples = builder.as_dataset(split=share.of("+".join(split_names(builder, split))), shuffle_files=shuffle,
                                read_config=read_config, decoders=decoders)
  if isinstance(split, Selection) and split.patients is not None:
    examples = examples.filter(_patient_filter(split.patients))
  return examples


def _patient_filter(patients):
  """A tf.data predicate keeping the examples whose patient_id is one of `patients` (a hash-table lookup)."""
  patients = sorted(patients)
  table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(patients + [""], tf.string), tf.constant([1] * len(patients) + [0], tf.int32)), default_value=0)
  return lambda example: table.lookup(example["patient_id"]) > 0


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
  """Stored uint8 image(s) -> image_size square uint8, area-averaged when shrinking."""
  if image.shape[-2] == image_size:
    return image
  resized = tf.image.resize(image, (image_size, image_size), method="area", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _image_label(example, image_size: int):
  return resize(example["image"], image_size), example["label"]


def eval_batches(builder: tfds.core.DatasetBuilder, split, image_size: int,
                 batch_size: int, share: Share = WHOLE) -> tf.data.Dataset:
  """(uint8 images [B, S, S, 1], int labels [B]) of `split` (its `share`), in the order of `split_metadata`.

  Never shuffled, augmented or oversampled. `split` is 'train', 'validation',
  'test' or 'all' (every split, for evaluating on a dataset not trained on).
  """
  return (_read(builder, split, share=share)
          .map(lambda example: _image_label(example, image_size), num_parallel_calls=_AUTOTUNE)
          .batch(batch_size)
          .prefetch(_AUTOTUNE))


def split_metadata(builder: tfds.core.DatasetBuilder, split, extra=(),
                   share: Share = WHOLE) -> dict[str, np.ndarray]:
  """Per-example metadata of `split` (its `share`), in the order `eval_batches` yields the images.

  Returns 'label' (int), 'patient_id' (str), 'laterality' and 'view' (their
  class names, e.g. 'L', 'MLO'), 'age' where the dataset has it, and the
  scalar features named in `extra` (e.g. the subgroup features the dataset
  declares: `subgroups.Declaration.columns`). Images are not decoded, so
  this is a quick pass over the records.

  Raises:
    ValueError: a feature in `extra` that the dataset lacks or that is not a scalar.
  """
  features = builder.info.features
  for key in extra:
    if key not in features or features[key].shape != ():
      raise ValueError(f"{builder.info.full_name} has no scalar feature {key!r} to return as metadata")
  keys = [key for key in METADATA if key in features] + [key for key in extra if key not in METADATA]
  keys = list(dict.fromkeys(keys))
  examples = _read(builder, split, decoders={"image": tfds.decode.SkipDecoding()}, share=share)
  columns = {key: [] for key in keys}
  for batch in examples.map(lambda example: {key: example[key] for key in keys}).batch(1024):
    for key in keys:
      columns[key].append(batch[key].numpy())
  metadata = {key: np.concatenate(values) if values else np.zeros(0) for key, values in columns.items()}
  for key in keys:
    feature = features[key]
    if isinstance(feature, tfds.features.Text):
      metadata[key] = np.array([value.decode("utf-8") for value in metadata[key]], dtype=str)
    elif isinstance(feature, tfds.features.ClassLabel) and key != "label":
      metadata[key] = np.array(feature.names, dtype=str)[metadata[key].astype(int)]
  return metadata


def image_digests(builder: tfds.core.DatasetBuilder, split: str) -> np.ndarray:
  """SHA-256 of each stored (encoded) image of `split`, in `split_metadata` order, without decoding.

  Identical pixels encode to identical PNG bytes, so equal digests find
  duplicate images across splits (the reporting checklist's leakage check).
  """
  examples = _read(builder, split, decoders={"image": tfds.decode.SkipDecoding()})
  return np.array([hashlib.sha256(encoded).hexdigest()
                   for batch in examples.map(lambda example: example["image"]).batch(256)
                   for encoded in batch.numpy()], dtype=str)


def eval_examples(builder: tfds.core.DatasetBuilder, split, image_size: int, keys=()):
  """Numpy dicts per example of `split`, in the order of `split_metadata`: "image" and the features `keys`.

  The image as `eval_batches` gives it (resized to `image_size`), read in
  the same pass over the records as its other features, of any shape (a
  lesion box, a film's list of findings); unbatched, so features of varying
  length need no padding. The caller batches.

  Raises:
    ValueError: a feature in `keys` that the dataset lacks.
  """
  keys = list(dict.fromkeys(key for key in keys if key != "image"))
  missing = [key for key in keys if key not in builder.info.features]
  if missing:
    raise ValueError(f"{builder.info.full_name} has no feature(s) {', '.join(missing)}")
  examples = _read(builder, split).map(
      lambda example: {"image": resize(example["image"], image_size), **{key: example[key] for key in keys}},
      num_parallel_calls=_AUTOTUNE)
  return tfds.as_numpy(examples.prefetch(_AUTOTUNE))


def targets(labels: tf.Tensor, classes: int) -> tf.Tensor:
  """Int labels -> what the model's output is compared with: [B, 1] for a
  sigmoid over two classes, one-hot [B, classes] for a softmax."""
  if classes == 2:
    return tf.cast(labels, tf.float32)[:, None]
  return tf.one_hot(labels, classes)


def fit_batches(batches: tf.data.Dataset, classes: int, class_weight: dict | None = None) -> tf.data.Dataset:
  """(x, int labels) batches -> what `fit` takes: (x, targets), or (x, targets, weights) with `class_weight`.

  The class weights are applied here, as per-example weights, rather than by
  `fit(class_weight=...)`: Keras can add them only to a plain tf.data.Dataset,
  not to the per-worker datasets of a cluster (`training.multiworker`).
  Shared by the image pipeline and the feature cache's.
  """
  if class_weight is None:
    return batches.map(lambda x, labels: (x, targets(labels, classes)), num_parallel_calls=_AUTOTUNE)
  table = tf.constant([class_weight.get(c, 0.0) for c in range(classes)], tf.float32)
  return batches.map(lambda x, labels: (x, targets(labels, classes), tf.gather(table, labels)),
                     num_parallel_calls=_AUTOTUNE)


def class_counts(builder: tfds.core.DatasetBuilder, split="train", share: Share = WHOLE) -> np.ndarray:
  labels = split_metadata(builder, split, share=share)["label"]
  return np.bincount(labels.astype(int), minlength=num_classes(builder))


def balancing_class_weights(counts: np.ndarray) -> dict[int, float]:
  """Inverse-frequency loss weights that give every present class the same total weight."""
  present = counts > 0
  return {int(label): float(counts.sum() / (present.sum() * count))
          for label, count in enumerate(counts) if count > 0}


def fits_in_memory(examples: int, image_size: int) -> bool:
  """Whether `examples` decoded images take under half the free memory."""
  needed = examples * image_size * image_size
  available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return needed < available / 2


def _maybe_cache(dataset: tf.data.Dataset, cache: bool, what: str, examples: int, image_size: int):
  """`dataset` cached in memory on request, if its `examples` images fit (a worker's share: only those)."""
  if not cache:
    return dataset
  if not fits_in_memory(examples, image_size):
    logging.warning("%s (%d images) at %d px does not fit in memory: not cached", what, examples, image_size)
    return dataset
  return dataset.cache()


def steps_per_epoch(builder: tfds.core.DatasetBuilder, global_batch_size: int, split="train") -> int:
  """One epoch = as many images as the training split (oversampled or not)."""
  return max(1, math.ceil(num_examples(builder, split) / global_batch_size))


def train_batches(builder: tfds.core.DatasetBuilder, *, image_size: int, batch_size: int,
                  augmentation: augmentations.Augmentation, oversample: bool, cache: bool, seed: int,
                  deterministic: bool, split="train", share: Share = WHOLE,
                  class_weight: dict | None = None) -> tf.data.Dataset:
  """Endless (uint8 images [B, S, S, 1], targets[, weights]) batches of `share` of `split`.

  `split` is the training split, or a cross-validation fold's training part.

  Reads shuffled shards, decodes and resizes in parallel, caches the decoded
  images, then shuffles; with `oversample`, draws each batch evenly from one
  endless shuffled stream per class (`sample_from_datasets`), so the minority
  classes are repeated on the fly, never written. Augmentation runs last, on
  whole batches, so a cached image is augmented anew each time it is drawn.

  `batch_size` is this pipeline's batch: the global batch on one machine, a
  replica's on a worker of a cluster, which reads and oversamples its own
  `share` only (its class counts, its seed: `Share.seed`).
  """
  classes = num_classes(builder)
  seed = share.seed(seed)
  examples = (_read(builder, split, shuffle=True, seed=seed, deterministic=deterministic, share=share)
              .map(lambda example: _image_label(example, image_size), num_parallel_calls=_AUTOTUNE))
  counts = class_counts(builder, split, share=share)
  what = f"share {share.index + 1} of {share.count} of {builder.info.full_name}'s {split_label(split)}"
  logging.info("training input: %s: %d examples, %s", what, int(counts.sum()),
               "chosen by patient from the records this pipeline reads and decodes" if isinstance(split, Selection)
               else "the only ones this pipeline reads and decodes")
  examples = _maybe_cache(examples, cache, what, int(counts.sum()), image_size)
  batches = endless(examples, counts, oversample, seed).batch(batch_size, drop_remainder=True)
  batches = augmentations.augmented(batches, augmentation, seed)
  options = tf.data.Options()
  options.deterministic = deterministic
  return fit_batches(batches, classes, class_weight).prefetch(_AUTOTUNE).with_options(options)


def endless(examples: tf.data.Dataset, counts: np.ndarray, oversample: bool, seed: int) -> tf.data.Dataset:
  """An endless shuffled stream of (x, label) examples; with `oversample`, classes drawn evenly.

  Oversampling draws from one endless shuffled stream per class
  (`sample_from_datasets`), so minority examples are repeated on the fly and
  never written. Shared by the image pipeline and the feature cache's.
  """
  if not oversample:
    return examples.shuffle(int(counts.sum()), seed=seed).repeat()
  streams = [examples.filter(lambda _, label, c=c: label == c).shuffle(int(count), seed=seed + c).repeat()
             for c, count in enumerate(counts) if count > 0]
  return tf.data.Dataset.sample_from_datasets(streams, seed=seed)


def validation_batches(builder: tfds.core.DatasetBuilder, *, image_size: int, global_batch_size: int,
                       cache: bool, split="validation") -> tf.data.Dataset:
  """The validation split as (uint8 images, targets), in file order, never altered."""
  batches = fit_batches(eval_batches(builder, split, image_size, global_batch_size), num_classes(builder))
  return _maybe_cache(batches, cache, f"{builder.info.full_name}'s {split_label(split)}",
                      num_examples(builder, split), image_size)


def split_label(split) -> str:
  """How logs name a split ("train split") or a `Selection` (its own name, e.g. "fold 2 of 5's training part")."""
  return str(split) if isinstance(split, Selection) else f"{split} split"
