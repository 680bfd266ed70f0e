"""Searches dropout, L2 and the learning rate with Keras Tuner, on the trainer's own pipeline.

  python -m mammo_train.tune --dataset=cmmd --model=cnn --tuner=hyperband --max_epochs=20 \
      --workdir=runs/tune-cnn
  tensorboard --logdir=runs/tune-cnn     # the HParams tab compares the trials
  python -m mammo_train --flagfile=runs/tune-cnn/best.flags --workdir=runs/cnn-best
  python -m mammo_train.tune --helpfull

A command: flags -> `config.Tune` -> `training.search.run` (whose docstring
says what the workdir holds and how a search resumes). Exit status 1 when no
trial completed; a bad flag ends the run with one line and exit status 2.
"""
import os
import sys

from absl import flags

from mammo_train import cli, config
from mammo_train.training import search


def main(argv):
  del argv
  cfg = config.tune_from_flags(flags.FLAGS)
  workdir = cfg.train.workdir
  rows = search.run(cfg, config.flagfile(flags.FLAGS, config.TUNE_FLAGS),
                    lambda trial: config.trial_flagfile(flags.FLAGS, trial, workdir))
  print(search.format_table(rows))
  print(f"summary: {os.path.join(workdir, search.SUMMARY)}")
  if not (rows and rows[0]["status"] == "COMPLETED"):
    print("no trial completed: see the errors above", file=sys.stderr)
    sys.exit(1)
  print(f"best: trial {rows[0]['trial']}, validation AUC {rows[0]['val_auc']:.4f}; train it with "
        f"python -m mammo_train --flagfile={os.path.join(workdir, search.BEST_FLAGS)}")


if __name__ == "__main__":
  cli.run("mammo_train.tune", config.define_tune_flags, main)
