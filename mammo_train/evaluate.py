"""Evaluates a trained model on a split of any prepared dataset, and writes its report.

  python -m mammo_train.evaluate --model=runs/r50/best.keras --dataset=cmmd --split=test \
      --workdir=runs/r50/eval
  python -m mammo_train.evaluate --model=runs/r50/best.keras --dataset=mias --split=all

A command: flags -> `config.Evaluate` -> `evaluation.evaluator.evaluate_model`
(whose docstring says how the threshold and calibration are chosen). A bad
flag, an unbuilt dataset, a missing or unreadable model, or one that does not
fit the dataset ends the command with one line and exit status 2.
"""
import pathlib

from absl import flags

from mammo_train import cli, config, run_folder
from mammo_train.evaluation import evaluator, report
from mammo_train.training import runtime


def main(argv):
  del argv
  cfg = config.evaluate_from_flags(flags.FLAGS)
  run = runtime.set_up(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, seed=cfg.protocol.seed)
  if cfg.split != "all":
    runtime.require_splits(run.builder, [cfg.split], f"--split={cfg.split}")
  run_folder.write_flags(cfg.workdir, config.flagfile(flags.FLAGS, config.EVALUATE_FLAGS))
  result = evaluator.evaluate_model(cfg.model, run.builder, cfg.split, cfg.workdir, None, cfg.batch_size,
                                    cfg.protocol, tb_logdir=cfg.tb_logdir, baselines_dir=cfg.baselines_dir,
                                    threshold=cfg.threshold)
  print(f"report: {pathlib.Path(cfg.workdir) / report.REPORT}")
  for level_name, level in result["levels"].items():
    print(f"{level_name} level: " + ", ".join(f"{name} {report.interval_text(level, name)}"
                                              for name in report.HEADLINE if name in level))


if __name__ == "__main__":
  cli.run("mammo_train.evaluate", config.define_evaluate_flags, main)
