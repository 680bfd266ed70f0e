"""Trains a mammogram classifier on a prepared TFDS dataset and evaluates it.

  python -m mammo_train --dataset=cmmd --model=resnet50 --weights=imagenet --oversample --workdir=runs/r50
  python -m mammo_train --flagfile=runs/r50/flags.txt --init_from=runs/r50/best.keras \
      --fine_tune_layers=30 --workdir=runs/r50ft
  python -m mammo_train --helpfull

A bad flag or a dataset that is not built yet ends the run with one line on
stderr and exit status 2.
"""
import sys

from absl import app, flags

from mammo_train import config, data, train


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    cfg = config.from_flags(flags.FLAGS)
    metrics = train.train(cfg, config.flagfile(flags.FLAGS))
  except (config.ConfigError, data.DatasetNotBuiltError) as error:
    print(f"mammo_train: error: {error}", file=sys.stderr)
    sys.exit(2)
  for level, scores in metrics["levels"].items():
    auc = "roc_auc" if "roc_auc" in scores else "macro_roc_auc"
    print(f"test {level}: {auc} {scores[auc]:.3f}, accuracy {scores['accuracy']:.3f}")
  print(f"report: {cfg.workdir}/eval/report.md")


if __name__ == "__main__":
  app.run(main)
