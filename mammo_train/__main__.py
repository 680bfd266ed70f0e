"""Trains a mammogram classifier on a prepared TFDS dataset and evaluates it.

  python -m mammo_train --dataset=cmmd --model=resnet50 --weights=imagenet --oversample --workdir=runs/r50
  python -m mammo_train --flagfile=runs/r50/flags.txt --init_from=runs/r50/best.keras \
      --fine_tune_layers=30 --workdir=runs/r50ft
  python -m mammo_train --helpfull

A bad flag, a dataset that is not built yet, or an --init_from model that
does not fit ends the run with one line on stderr and exit status 2.
"""
from absl import flags

from mammo_train import cli, config
from mammo_train.training import loop


def main(argv):
  del argv
  cfg = config.train_from_flags(flags.FLAGS)
  metrics = loop.train(cfg, config.flagfile(flags.FLAGS, config.TRAIN_FLAGS))
  for level, scores in metrics.get("levels", {}).items():
    auc = "roc_auc" if "roc_auc" in scores else "macro_roc_auc"
    print(f"test {level}: {auc} {scores[auc]:.3f}, accuracy {scores['accuracy']:.3f}")
  if metrics:
    print(f"report: {cfg.workdir}/eval/report.md")


if __name__ == "__main__":
  cli.run("mammo_train", config.define_train_flags, main)
