"""One training run: strategy, precision policy, model, compile, callbacks, fit, evaluate.

The workdir holds everything a run leaves: flags.txt (reusable with
--flagfile), run.json (dataset name, version, split sizes, class counts, and
the resolved precision, strategy and batch), best.keras (best validation AUC),
final.keras, history.csv, logs/ (TensorBoard), eval/ (test-split evaluation),
and, while the run is unfinished, backup/ from which a restarted run resumes.
"""
import csv
import json
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from mammo_train import data, evaluate, feature_cache, models
from mammo_train.config import Config

# On CPU, mixed_bfloat16 only pays where the hardware has bfloat16 arithmetic
# (AVX512-BF16 / AMX); elsewhere it is emulated and slower than float32.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# Halve the learning rate after this many epochs without a better val loss: a
# small validation split gives a noisy loss, and a short patience decays the
# rate to nothing within a few minutes of training.
LR_PATIENCE = 8
LR_FACTOR = 0.5
GRID_IMAGES = 16
# Where keras.callbacks.BackupAndRestore records the last epoch it backed up.
_BACKUP_METADATA = "training_metadata.json"


def cpu_has_bfloat16() -> bool:
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
  except OSError:
    return False
  return any(flag in flags for flag in _BF16_CPU_FLAGS)


def resolve_precision(choice: str) -> str:
  """The Keras dtype policy for --precision (auto: the fastest correct one here).

  mixed_float16 on a GPU; on CPU, mixed_float16 is about 5x slower than
  float32, and mixed_bfloat16 is faster only with hardware bfloat16.
  """
  if choice != "auto":
    return choice
  if tf.config.list_physical_devices("GPU"):
    return "mixed_float16"
  return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def make_strategy(choice: str) -> tf.distribute.Strategy:
  """--strategy: mirrored over GPUs (or the logical CPUs when there is no GPU)."""
  gpus = tf.config.list_logical_devices("GPU")
  if choice == "mirrored":
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
  if choice == "auto" and len(gpus) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def compile_model(model: keras.Model, classes: int, learning_rate: float):
  binary = classes == 2
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=keras.losses.BinaryCrossentropy() if binary else keras.losses.CategoricalCrossentropy(),
      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
               keras.metrics.Recall(name="recall"),
               keras.metrics.BinaryAccuracy(name="accuracy") if binary
               else keras.metrics.CategoricalAccuracy(name="accuracy")])


def image_grid(images: np.ndarray, columns: int = 4) -> np.ndarray:
  """uint8 [N, S, S, 1] -> one [rows * S, columns * S, 1] image, blank cells black."""
  count, size = images.shape[0], images.shape[1]
  rows = -(-count // columns)
  cells = np.zeros((rows * columns,) + images.shape[1:], np.uint8)
  cells[:count] = images
  return cells.reshape(rows, columns, size, size, 1).transpose(0, 2, 1, 3, 4).reshape(
      rows * size, columns * size, 1)


def write_pipeline_grid(logdir: str, images: np.ndarray):
  """Shows in TensorBoard what the model is fed: a grid of one training batch."""
  with tf.summary.create_file_writer(os.path.join(logdir, "pipeline")).as_default():
    tf.summary.image("training_batch", image_grid(images[:GRID_IMAGES])[None], step=0)


def best_so_far(history_csv: str, monitor: str = "val_auc") -> float | None:
  """The best monitored value logged by an interrupted run, so a resumed run's
  checkpoint only replaces best.keras with a better model."""
  if not os.path.exists(history_csv):
    return None
  with open(history_csv) as f:
    values = [float(row[monitor]) for row in csv.DictReader(f) if row.get(monitor)]
  return max(values) if values else None


def trim_history(workdir: str):
  """Drops history.csv rows of epochs the backup does not hold.

  A run killed after logging an epoch but before backing it up redoes that
  epoch when it resumes; without this its row would be logged twice.
  """
  history, metadata = os.path.join(workdir, "history.csv"), os.path.join(workdir, "backup", _BACKUP_METADATA)
  if not os.path.exists(history):
    return
  done = 0
  if os.path.exists(metadata):
    with open(metadata) as f:
      done = json.load(f)["epoch"]
  with open(history) as f:
    reader = csv.DictReader(f)
    fields, rows = reader.fieldnames, [row for row in reader if int(row["epoch"]) < done]
  with open(history, "w", newline="") as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    writer.writerows(rows)


def callbacks(cfg: Config, full_model: keras.Model | None = None) -> list[keras.callbacks.Callback]:
  """The run's callbacks; `full_model` when the head trains alone, so best.keras is the whole model."""
  history = os.path.join(cfg.workdir, "history.csv")
  trim_history(cfg.workdir)
  best = os.path.join(cfg.workdir, "best.keras")
  if full_model is None:
    checkpoint = keras.callbacks.ModelCheckpoint(best, monitor="val_auc", mode="max", save_best_only=True,
                                                 initial_value_threshold=best_so_far(history))
  else:
    checkpoint = feature_cache.SaveModelOnImprovement(full_model, best, "val_auc", best_so_far(history))
  return [
      keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=LR_FACTOR, patience=LR_PATIENCE),
      checkpoint,
      keras.callbacks.CSVLogger(history, append=True),
      keras.callbacks.TensorBoard(os.path.join(cfg.workdir, "logs"), write_graph=cfg.tensorboard_graph),
      # Last, so an epoch is backed up only once every other callback has logged it.
      keras.callbacks.BackupAndRestore(os.path.join(cfg.workdir, "backup")),
  ]


def dataset_info(builder, counts: np.ndarray) -> dict:
  return {
      "name": builder.info.full_name, "version": str(builder.info.version),
      "data_dir": builder.data_dir,
      "splits": {split: data.num_examples(builder, split) for split in data.SPLITS},
      "classes": builder.info.features["label"].names,
      "train_class_counts": counts.tolist(),
  }


def train(cfg: Config, flagfile: str) -> dict:
  """Trains, keeps the best model by validation AUC, and evaluates it on the test split.

  Args:
    cfg: the run's config.
    flagfile: the run's flags as --flagfile text, written to the workdir.

  Returns:
    The test-split metrics of the best model (`evaluate.evaluate_model`).
  """
  builder = data.load_builder(cfg.dataset, cfg.data_dir)
  keras.utils.set_random_seed(cfg.seed)
  if cfg.deterministic:
    tf.config.experimental.enable_op_determinism()
  image_size = cfg.image_size or builder.info.features["image"].shape[0]
  classes = data.num_classes(builder)
  precision = resolve_precision(cfg.precision)
  keras.mixed_precision.set_global_policy(precision)
  strategy = make_strategy(cfg.strategy)
  global_batch = cfg.batch_size * strategy.num_replicas_in_sync
  counts = data.class_counts(builder)
  steps = data.steps_per_epoch(builder, global_batch)

  with strategy.scope():  # variables are made per replica
    if cfg.init_from:
      model = models.load(cfg.init_from, image_size, classes, cfg.model)
    else:
      model = models.build(cfg.model, image_size, classes, cfg.weights, cfg.dropout, cfg.l2)
    models.set_fine_tune(model, cfg.fine_tune_layers)
    compile_model(model, classes, cfg.learning_rate)

  os.makedirs(cfg.workdir, exist_ok=True)
  with open(os.path.join(cfg.workdir, "flags.txt"), "w") as f:
    f.write(flagfile)
  run = {"dataset": dataset_info(builder, counts), "image_size": image_size, "precision": precision,
         "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
         "global_batch_size": global_batch, "steps_per_epoch": steps}
  with open(os.path.join(cfg.workdir, "run.json"), "w") as f:
    json.dump(run, f, indent=2)
  logging.info("run: %s", run)

  train_batches = data.train_batches(
      builder, image_size=image_size, global_batch_size=global_batch, augmentation=cfg.augmentation,
      oversample=cfg.oversample, cache=cfg.cache, seed=cfg.seed, deterministic=cfg.deterministic)
  write_pipeline_grid(os.path.join(cfg.workdir, "logs"), next(iter(train_batches))[0].numpy())
  if cfg.feature_cache and cfg.fine_tune_layers == 0 and feature_cache.has_backbone(model):
    # Frozen backbone: its features are computed once, only the head trains.
    with strategy.scope():
      extractor, head = feature_cache.split_model(model)
      compile_model(head, classes, cfg.learning_rate)
    folder = feature_cache.compute(os.path.join(cfg.workdir, "feature_cache"), builder, extractor, image_size,
                                   global_batch, cfg.augmentation, cfg.cache_views, cfg.seed)
    trained, full_model = head, model
    train_batches = feature_cache.train_batches(folder, classes, global_batch, cfg.oversample, cfg.seed)
    validation = feature_cache.validation_batches(folder, classes, global_batch)
  else:
    trained, full_model = model, None
    validation = data.validation_batches(builder, image_size=image_size, global_batch_size=global_batch,
                                         cache=cfg.cache)

  trained.fit(train_batches, epochs=cfg.epochs, steps_per_epoch=steps, validation_data=validation,
              class_weight=data.balancing_class_weights(counts) if cfg.class_weights else None,
              callbacks=callbacks(cfg, full_model), shuffle=False, verbose=2)
  model.save(os.path.join(cfg.workdir, "final.keras"))

  best = keras.models.load_model(os.path.join(cfg.workdir, "best.keras"))
  return evaluate.evaluate_model(best, builder, "test", os.path.join(cfg.workdir, "eval"), image_size,
                                 global_batch, seed=cfg.seed, tb_logdir=os.path.join(cfg.workdir, "logs"))
