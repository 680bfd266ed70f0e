"""Patient-grouped K-fold cross-validation of a training recipe: K runs, one pooled out-of-fold report.

  python -m mammo_train.cv --dataset=mias/density --folds=5 --image_size=128 --epochs=5 --oversample \
      --workdir=runs/cv-oversample
  python -m mammo_train.compare --workdir=runs/cv-compare runs/cv-oversample runs/cv-weights

Every trainer flag is accepted and trains each fold (WORKDIR/fold_<k>/);
WORKDIR/cv/ holds the pooled predictions.csv, metrics.json and report.md
(`mammo_train.training.cross_validation`). Rerunning the same command
finishes a killed cross-validation; finished folds are not retrained. A bad
flag ends in one line on stderr and exit status 2.
"""
from absl import flags

from mammo_train import cli, config
from mammo_train.evaluation import report
from mammo_train.training import cross_validation


def main(argv):
  del argv
  cfg = config.cv_from_flags(flags.FLAGS)
  metrics = cross_validation.run(cfg, config.flagfile(flags.FLAGS, config.CV_FLAGS))
  for level, scores in metrics["levels"].items():
    auc = "roc_auc" if "roc_auc" in scores else "macro_roc_auc"
    print(f"pooled out-of-fold {level}: {auc} {report.interval_text(scores, auc)}")
  print(f"report: {cfg.train.workdir}/{cross_validation.CV}/report.md")


if __name__ == "__main__":
  cli.run("mammo_train.cv", config.define_cv_flags, main)
