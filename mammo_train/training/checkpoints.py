"""Crash-safe run state: the backup a killed run resumes from, the best model, the epoch log.

A run can be killed at any moment, also while it writes. Every file a resume
depends on is therefore replaced whole or not at all: written under a
temporary name, then renamed (a rename within one folder is atomic), and a
backup is a folder swapped in one rename. Keras's own BackupAndRestore writes
its weights in place, so a kill during that write left a corrupt file that
every later resume failed on.
"""
import csv
import json
import os
import shutil

import keras
import numpy as np

_STAGING, _PREVIOUS = ".staging", ".previous"
# Where keras.callbacks.BackupAndRestore records the last epoch it backed up.
_BACKUP_METADATA = "training_metadata.json"


def save_model(model: keras.Model, path: str):
  """model.save, atomically: a kill leaves the old file or the new one, never half of one."""
  partial = path[:-len(".keras")] + ".partial.keras"
  model.save(partial)
  os.replace(partial, path)


def write_json(path: str, value):
  """JSON replaced whole: written under a temporary name, then renamed."""
  partial = path + ".partial"
  with open(partial, "w") as f:
    json.dump(value, f, indent=2)
  os.replace(partial, path)


def recover_backup(backup_dir: str):
  """Repairs what a kill during `AtomicBackup`'s swap left: the previous backup comes back."""
  if not os.path.exists(backup_dir) and os.path.exists(backup_dir + _PREVIOUS):
    os.rename(backup_dir + _PREVIOUS, backup_dir)
  for leftover in (backup_dir + _STAGING, backup_dir + _PREVIOUS):
    shutil.rmtree(leftover, ignore_errors=True)


def backed_up_epochs(backup_dir: str) -> int:
  path = os.path.join(backup_dir, _BACKUP_METADATA)
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return json.load(f)["epoch"]


# AtomicBackup replaces keras.callbacks.BackupAndRestore's private `_save_model` (Keras writes the
# weights in place; see the module docstring) and reads what that method writes: `_weights_path`,
# `_current_epoch`, `_last_batch_seen` (keras/src/callbacks/backup_and_restore.py). Private names
# change without notice, so only the Keras versions checked against that file are accepted.
KNOWN_KERAS = ("3.15.",)
_BACKUP_PRIVATES = ("_save_model", "_weights_path", "_current_epoch", "_last_batch_seen")


def _check_backup_privates(callback) -> None:
  """Refuses, in one line, a Keras whose BackupAndRestore is not the one AtomicBackup overrides."""
  missing = [name for name in _BACKUP_PRIVATES if not hasattr(callback, name)]
  if missing or not keras.__version__.startswith(KNOWN_KERAS):
    raise RuntimeError(f"Keras {keras.__version__} is not a version mammo_train's crash-safe backup was checked "
                       f"against ({', '.join(KNOWN_KERAS)}x; missing {missing or 'nothing'}): install keras "
                       "as setup.cfg pins it (mammo_train/training/checkpoints.py)")


class AtomicBackup(keras.callbacks.BackupAndRestore):
  """BackupAndRestore whose backup (weights + epoch) is replaced whole, in one folder rename.

  Args:
    backup_dir: the backup folder.
    writes: False on a cluster's non-chief workers: they resume from the
      chief's backup but never write it.
  """

  def __init__(self, backup_dir: str, writes: bool = True):
    super().__init__(backup_dir)
    self.writes = writes
    _check_backup_privates(self)

  def on_train_begin(self, logs=None):
    if self.writes:
      recover_backup(self.backup_dir)
    super().on_train_begin(logs)

  def _save_model(self):
    if not self.writes:
      return
    staging, previous = self.backup_dir + _STAGING, self.backup_dir + _PREVIOUS
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    self.model.save_weights(os.path.join(staging, os.path.basename(self._weights_path)))
    with open(os.path.join(staging, _BACKUP_METADATA), "w") as f:
      json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
    if os.path.exists(self.backup_dir):
      os.rename(self.backup_dir, previous)
    os.rename(staging, self.backup_dir)
    shutil.rmtree(previous, ignore_errors=True)

  def on_train_end(self, logs=None):
    if self.writes:
      super().on_train_end(logs)


class SaveBest(keras.callbacks.Callback):
  """Keeps the model with the best monitored value, atomically, and that value beside it.

  The value is kept in `<path>.json` so a resumed run replaces the model only
  with a better one. `model` is the full model also when the head trains
  alone on cached features: best.keras is always the whole classifier.
  """

  def __init__(self, model: keras.Model, path: str, monitor: str = "val_auc", writes: bool = True):
    super().__init__()
    self.full_model, self.path, self.monitor, self.writes = model, path, monitor, writes
    self.record = path + ".json"
    self.best = -np.inf
    if os.path.exists(path) and os.path.exists(self.record):
      with open(self.record) as f:
        self.best = json.load(f)[monitor]

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self.monitor)
    if value is None or not value > self.best:
      return
    self.best = float(value)
    if self.writes:
      save_model(self.full_model, self.path)
      write_json(self.record, {self.monitor: self.best, "epoch": epoch})


def trim_history(history_csv: str, epochs_done: int):
  """Keeps history.csv rows of the epochs the backup holds, and drops the file if none is left.

  A run killed after logging an epoch but before backing it up redoes that
  epoch when it resumes; without this its row would be logged twice. A run
  killed before its first epoch ended leaves an empty file.
  """
  if not os.path.exists(history_csv):
    return
  with open(history_csv, newline="") as f:
    reader = csv.DictReader(f)
    fields = reader.fieldnames
    rows = [row for row in reader if row.get("epoch", "").isdigit() and int(row["epoch"]) < epochs_done]
  if not fields or not rows:
    os.remove(history_csv)
    return
  with open(history_csv + ".partial", "w", newline="") as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    writer.writerows(rows)
  os.replace(history_csv + ".partial", history_csv)
