"""One training run: set up, fit with crash-safe callbacks, keep the best model, evaluate it.

The workdir holds everything a run leaves: flags.txt (reusable with
--flagfile), run.json (dataset name, version, split sizes, class counts, the
resolved precision, strategy and batch, and whether the run finished),
best.keras (best validation AUC) and best.keras.json (that AUC), final.keras,
history.csv, logs/ (TensorBoard), eval/ (test-split evaluation), and, while
the run is unfinished, backup/ from which the same command resumes it.

A run killed at any moment finishes when the same command is run again:
before its first epoch ended, while computing the feature cache, between
epochs, while writing a backup or best.keras, or during the final evaluation
(final.keras is there: only the evaluation is redone). A finished run
(run.json says so) is refused.
"""
import json
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from mammo_train import checkpoints, config, data, evaluate, runtime

# Halve the learning rate after this many epochs without a better val loss: a
# small validation split gives a noisy loss, and a short patience decays the
# rate to nothing within a few minutes of training.
LR_PATIENCE = 8
LR_FACTOR = 0.5
GRID_IMAGES = 16
RUN_FILE = "run.json"


def finished(workdir: str) -> bool:
  path = os.path.join(workdir, RUN_FILE)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return bool(json.load(f).get("finished"))


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


def lr_schedule() -> keras.callbacks.Callback:
  return keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=LR_FACTOR, patience=LR_PATIENCE)


def callbacks(cfg: config.Train, out: str, model: keras.Model, chief: bool) -> list:
  """The run's callbacks: `model` is the full model, saved as best.keras also when the head trains alone."""
  history = os.path.join(out, "history.csv")
  backup = os.path.join(cfg.workdir, checkpoints.BACKUP)
  if chief:
    checkpoints.recover_backup(backup)
    checkpoints.trim_history(history, checkpoints.backed_up_epochs(backup))
  return [
      lr_schedule(),
      checkpoints.SaveBest(model, os.path.join(out, "best.keras"), writes=chief),
      keras.callbacks.CSVLogger(history, append=True),
      keras.callbacks.TensorBoard(os.path.join(out, "logs"), write_graph=cfg.tensorboard_graph),
      # Last, so an epoch is backed up only once every other callback has logged it.
      checkpoints.AtomicBackup(backup, writes=chief),
  ]


def dataset_info(builder) -> dict:
  return {
      "name": builder.info.full_name, "version": str(builder.info.version),
      "data_dir": builder.data_dir,
      "splits": {split: data.num_examples(builder, split) for split in data.SPLITS},
      "classes": builder.info.features["label"].names,
      "train_class_counts": data.class_counts(builder).tolist(),
  }


def train(cfg: config.Train, flagfile: str) -> dict:
  """Trains, keeps the best model by validation AUC, and evaluates it on the test split.

  Args:
    cfg: the run's config.
    flagfile: the run's flags as --flagfile text, written to the workdir.

  Returns:
    The test-split metrics of the best model (`evaluate.evaluate_model`).
  """
  if finished(cfg.workdir):
    raise config.ConfigError(f"--workdir={cfg.workdir} holds a finished run ({RUN_FILE}): pass a new --workdir")
  run = runtime.set_up_training(cfg)
  out = run.output_dir(cfg.workdir)
  model = runtime.build_model(run, cfg)
  summary = {"dataset": dataset_info(run.builder), "image_size": run.image_size, **run.describe(),
             "steps_per_epoch": data.steps_per_epoch(run.builder, run.global_batch), "finished": False}
  runtime.write_flags(out, flagfile)
  checkpoints.write_json(os.path.join(out, RUN_FILE), summary)
  logging.info("run: %s", summary)

  # The chief's final.keras: every worker of a cluster must agree whether training is left to do.
  if not os.path.exists(os.path.join(cfg.workdir, "final.keras")):  # else only the evaluation is left
    train_batches, validation = runtime.training_inputs(run, cfg, model, os.path.join(out, "feature_cache"))
    if not runtime.uses_feature_cache(cfg):
      write_pipeline_grid(os.path.join(out, "logs"), next(iter(train_batches))[0].numpy())
    trained = runtime.trained_part(run, cfg, model, cfg.learning_rate)
    trained.fit(train_batches, epochs=cfg.epochs, validation_data=validation,
                callbacks=callbacks(cfg, out, model, run.chief), verbose=2, **runtime.fit_arguments(run, cfg))
    checkpoints.save_model(model, os.path.join(out, "final.keras"))

  result = {}
  if run.chief:
    best = keras.models.load_model(os.path.join(out, "best.keras"))
    result = evaluate.evaluate_model(best, run.builder, "test", os.path.join(out, "eval"), run.image_size,
                                     run.global_batch, cfg.protocol, tb_logdir=os.path.join(out, "logs"))
  checkpoints.write_json(os.path.join(out, RUN_FILE), {**summary, "finished": True})
  return result
