"""Runs `python -m mammo_train` (or, with --cv, `python -m mammo_train.cv`) and SIGKILLs it at one
named point, for the resume tests.

  python tests/kill_run.py POINT TRAINER_FLAGS...
  python tests/kill_run.py --cv POINT CV_FLAGS...

The point is reached through the trainer's own code (a callback it runs, a
file it writes), never by timing, so each kill lands exactly where the test
says. A file write that is killed leaves half a file at the path it was
given, as a real kill during the write would.
"""
import os
import signal
import sys

import keras
import numpy as np

from mammo_train import __main__ as trainer
from mammo_train import cli, config
from mammo_train import cv
from mammo_train.evaluation import report
from mammo_train.training import loop


def die():
  os.kill(os.getpid(), signal.SIGKILL)


def half_written(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # a header and nothing behind it
  die()


def kill_in_callback(**hooks):
  callbacks = loop.callbacks
  loop.callbacks = lambda *args, **kwargs: [keras.callbacks.LambdaCallback(**hooks),
                                             *callbacks(*args, **kwargs)]


def kill_on_nth_write(owner, method, matches, nth):
  """Patches owner.method (a function that writes a file) to die half-way through its nth matching write."""
  original, seen = getattr(owner, method), []

  def write(*args, **kwargs):
    path = next((str(a) for a in (*args, *kwargs.values()) if isinstance(a, (str, os.PathLike))), "")
    if matches(path):
      seen.append(path)
      if len(seen) == nth:
        half_written(path)
    return original(*args, **kwargs)
  setattr(owner, method, write)


def kill_on_second_training():
  """Dies as the second training run starts: with --cv, once fold 0 has finished."""
  train, started = loop.train, []

  def second(*args, **kwargs):
    started.append(1)
    if len(started) == 2:
      die()
    return train(*args, **kwargs)
  loop.train = second


POINTS = {
    "between_folds": kill_on_second_training,
    # Before the first epoch has ended: history.csv is still empty.
    "first_epoch": lambda: kill_in_callback(on_train_batch_end=lambda batch, logs: die()),
    "between_epochs": lambda: kill_in_callback(on_epoch_begin=lambda epoch, logs: epoch == 2 and die()),
    # While the second backup's weights are written.
    "backup": lambda: kill_on_nth_write(keras.Model, "save_weights", lambda p: "backup" in p, 2),
    # While final.keras is written, at the end of training.
    "final_model": lambda: kill_on_nth_write(keras.Model, "save", lambda p: "final" in p, 1),
    # While the feature cache's second array is written.
    "feature_cache": lambda: kill_on_nth_write(np, "save", lambda p: "feature_cache" in p, 2),
    # During the final evaluation, while its report is written.
    "evaluation": lambda: setattr(report, "write", lambda result, curves, workdir, *args, **kwargs: half_written(
        os.path.join(workdir, "metrics.json"))),
}

if __name__ == "__main__":
  cross_validation = sys.argv[1] == "--cv" and sys.argv.pop(1)
  POINTS[sys.argv.pop(1)]()
  if cross_validation:
    cli.run("mammo_train.cv", config.define_cv_flags, cv.main)
  else:
    cli.run("mammo_train", config.define_train_flags, trainer.main)
