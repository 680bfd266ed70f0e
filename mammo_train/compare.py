"""Compares two or more evaluated models on the same examples: is one better, and how sure is that?

  python -m mammo_train.compare --workdir=runs/r50-vs-cnn runs/r50 runs/cnn
  python -m mammo_train.compare --workdir=OUT runs/a/eval runs/b/eval-cmmd-test cv-a cv-b

Each argument is a training run (its eval/), an evaluation folder
(`mammo_train.evaluate`'s workdir), a cross-validation folder (its cv/) or
one baseline of a `mammo_train.baselines` workdir (BASELINES/pixel_logistic).
Binary and multi-class evaluations alike (not mixed). They must have
scored the same examples (same dataset name and version, same split or
folds, same classes, same images); otherwise one line names the difference
and the exit status is 2. Writes OUT/report.md, OUT/compare.json and
OUT/roc_<level>.png (`mammo_train.evaluation.comparison_report`).
"""
from absl import flags

from mammo_train import cli, config
from mammo_train.evaluation import comparison_report, scored


def main(argv):
  cfg = config.compare_from_flags(flags.FLAGS, argv[1:])
  try:
    result = comparison_report.compare_folders(cfg.folders, cfg.workdir, cfg.n_bootstrap, cfg.seed)
  except scored.NotComparableError as error:
    raise config.ConfigError(str(error)) from None
  for pair in result["pairs"]:
    print(pair["sentence"])
  print(f"report: {comparison_report.report_path(cfg.workdir)}")


if __name__ == "__main__":
  cli.run("mammo_train.compare", config.define_compare_flags, main, takes_paths=True)
