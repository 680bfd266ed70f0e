"""One training run: set up, fit with crash-safe callbacks, keep the best model, evaluate it.

The workdir holds everything a run leaves (`mammo_train.run_folder` names
each file); while the run is unfinished, backup/ from which the same command
resumes it.

A run killed at any moment finishes when the same command is run again:
before its first epoch ended, while computing the feature cache, between
epochs, while writing a backup or best.keras, or during the final evaluation
(final.keras is there: only the evaluation is redone). A finished run
(run.json says so) is refused.
"""
import dataclasses
import os

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from mammo_train import config, run_folder
from mammo_train.evaluation import evaluator
from mammo_train.inputs import data
from mammo_train.training import checkpoints, runtime

# Halve the learning rate after this many epochs without a better val loss: a
# small validation split gives a noisy loss, and a short patience decays the
# rate to nothing within a few minutes of training.
LR_PATIENCE = 8
LR_FACTOR = 0.5
GRID_IMAGES = 16


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


def callbacks(cfg: config.Train, out: run_folder.RunFolder, model: keras.Model, chief: bool) -> list:
  """The run's callbacks: `model` is the full model, saved as best.keras also when the head trains alone.

  `out` is where this process writes (a scratch folder on a cluster's other
  workers); the backup they all resume from is the workdir's.
  """
  backup = run_folder.RunFolder(cfg.workdir).backup
  if chief:
    checkpoints.recover_backup(backup)
    checkpoints.trim_history(out.history, checkpoints.backed_up_epochs(backup))
  return [
      lr_schedule(),
      checkpoints.SaveBest(model, out.best, writes=chief),
      keras.callbacks.CSVLogger(out.history, append=True),
      keras.callbacks.TensorBoard(out.logs, write_graph=cfg.tensorboard_graph),
      # Last, so an epoch is backed up only once every other callback has logged it.
      checkpoints.AtomicBackup(backup, writes=chief),
  ]


def dataset_info(builder, partition: data.Partition = data.Partition()) -> dict:
  info = {
      "name": builder.info.full_name, "version": str(builder.info.version),
      "data_dir": builder.data_dir,
      "splits": {split: data.num_examples(builder, split) for split in data.SPLITS},
      "classes": builder.info.features["label"].names,
      "stored_size": builder.info.features["image"].shape[0],  # what `predict` preprocesses new files to
      "train_class_counts": data.class_counts(builder, partition.train).tolist(),
  }
  if partition != data.Partition():  # a cross-validation fold: which patients played each role
    info["partition"] = {role: {"name": str(part), "splits": data.split_names(builder, part),
                                "images": data.num_examples(builder, part)}
                         for role, part in ((field.name, getattr(partition, field.name))
                                            for field in dataclasses.fields(partition))}
  return info


def train(cfg: config.Train, flagfile: str) -> dict:
  """Trains, keeps the best model by validation AUC, and evaluates it on the test split.

  Args:
    cfg: the run's config.
    flagfile: the run's flags as --flagfile text, written to the workdir.

  Returns:
    The test-split metrics of the best model (`evaluation.evaluator.evaluate_model`).
  """
  if run_folder.RunFolder(cfg.workdir).finished():
    raise config.ConfigError(f"--workdir={cfg.workdir} holds a finished run ({run_folder.RUN}): pass a new --workdir")
  run = runtime.set_up_training(cfg)
  out = run_folder.RunFolder(run.output_dir(cfg.workdir))
  model = runtime.build_model(run, cfg)
  summary = {"dataset": dataset_info(run.builder, cfg.partition), "image_size": run.image_size, **run.describe(),
             "steps_per_epoch": data.steps_per_epoch(run.builder, run.global_batch, cfg.partition.train),
             "finished": False}
  run_folder.write_flags(out.root, flagfile)
  out.write_summary(summary)
  logging.info("run: %s", summary)

  # The chief's final.keras: every worker of a cluster must agree whether training is left to do.
  if not os.path.exists(run_folder.RunFolder(cfg.workdir).final):  # else only the evaluation is left
    train_batches, validation = runtime.training_inputs(run, cfg, model, out.feature_cache)
    if not runtime.uses_feature_cache(cfg):
      images = next(iter(train_batches))[0]  # on a cluster, this worker's first replica's images
      write_pipeline_grid(out.logs, run.strategy.experimental_local_results(images)[0].numpy())
    trained = runtime.trained_part(run, cfg, model, cfg.learning_rate)
    trained.fit(train_batches, epochs=cfg.epochs, validation_data=validation,
                callbacks=callbacks(cfg, out, model, run.chief), verbose=2, **runtime.fit_arguments(run, cfg))
    checkpoints.save_model(model, out.final)

  result = {}
  if run.chief:
    best = keras.models.load_model(out.best)
    result = evaluator.evaluate_model(best, run.builder, cfg.partition.test, out.eval, run.image_size,
                                      run.global_batch, cfg.protocol, tb_logdir=out.logs, partition=cfg.partition)
  out.write_summary({**summary, "finished": True})
  return result
