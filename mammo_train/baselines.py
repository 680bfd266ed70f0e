"""Scores the baselines a model must beat (`evaluation.baselines` says which and how).

  python -m mammo_train.baselines --dataset=cmmd --workdir=runs/baselines

A command: flags -> `config.Baselines` -> `evaluation.baselines.run`. Each
baseline's report is written under --workdir; the summary report is printed.
"""
import pathlib

from absl import flags

from mammo_train import cli, config, run_folder
from mammo_train.evaluation import baselines, report
from mammo_train.training import runtime


def main(argv):
  del argv
  cfg = config.baselines_from_flags(flags.FLAGS)
  prepared = runtime.set_up(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, seed=cfg.protocol.seed)
  runtime.require_splits(prepared.builder, ["train", "validation"] + ([cfg.split] if cfg.split != "all" else []),
                         "the baselines (fitted on train, thresholds chosen on validation)")
  run_folder.write_flags(cfg.workdir, config.flagfile(flags.FLAGS, config.BASELINES_FLAGS))
  baselines.run(prepared.builder, cfg.split, cfg.workdir, cfg.baselines, cfg.image_size, cfg.batch_size, cfg.epochs,
                cfg.protocol)
  print((pathlib.Path(cfg.workdir) / report.REPORT).read_text())


if __name__ == "__main__":
  cli.run("mammo_train.baselines", config.define_baselines_flags, main)
