"""New source files -> per-image and per-breast scores and decisions at a run's operating point.

  python -m mammo_train.predict --run=runs/synthetic --out=predictions scans/ more/*.dcm
  python -m mammo_train.predict --run=runs/cmmd --manifest=exams.csv --save_inputs --out=out pngs/
  python -m mammo_train.predict --run=runs/synthetic --explain --out=out scans/

A command: flags and paths -> `config.Predict` -> `inference.predictor.run`
(whose module docstring says how files are read, placed into breasts and
scored). Exit status: 0 when every file was scored, 1 when some were skipped
(each named with its reason on stderr, and in predictions.json), 2 for a
usage error (a bad flag, no files, a run folder or model that cannot be used).
"""
import sys

from absl import flags

from mammo_train import cli, config
from mammo_train.inference import predictor


def main(argv):
  cfg = config.predict_from_flags(flags.FLAGS, argv[1:])
  result, summary, csv_path, json_path, page = predictor.run(cfg, config.flagfile(flags.FLAGS, config.PREDICT_FLAGS))
  for failure in result.failures:
    print(f"mammo_train.predict: skipped {failure.path}: {failure.reason} ({failure.detail})", file=sys.stderr)
  print(f"{summary}\npredictions: {csv_path}, {json_path}; review: {page}")
  if result.failures:
    sys.exit(1)


if __name__ == "__main__":
  cli.run("mammo_train.predict", config.define_predict_flags, main, takes_paths=True)
