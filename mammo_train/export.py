"""Ships a trained model: SavedModel, TFLite or ONNX, checked against Keras in a clean process, with a model card.

  python -m mammo_train.export --model=runs/r50/best.keras --format=saved_model --out=exports/r50
  python -m mammo_train.export --model=runs/r50/best.keras --format=onnx --out=exports/r50

A command: flags -> `config.Export` -> `deployment.exporter.export` (whose
docstring says what is exported and how it is checked). Exit status 1 when
an export does not match Keras (the card records the figures); 2 for a usage
error (a bad flag, a model outside a training run, run files that cannot be read).
"""
import sys

from absl import flags

from mammo_train import cli, config, run_folder
from mammo_train.deployment import exporter


def main(argv):
  del argv
  cfg = config.export_from_flags(flags.FLAGS)
  try:
    card = exporter.export(cfg.model, cfg.format, cfg.out, data_dir=cfg.data_dir)
  except ValueError as error:  # a run file that is missing or unreadable: the user's to fix
    raise config.ConfigError(str(error)) from None
  except exporter.ExportError as error:
    print(f"mammo_train.export: failed: {error}", file=sys.stderr)
    sys.exit(1)
  run_folder.write_flags(cfg.out, config.flagfile(flags.FLAGS, config.EXPORT_FLAGS))
  for name, entry in card["exports"].items():
    check = {key: value for key, value in entry["check"].items() if key != "on"}
    print(f"{name}: {cfg.out}/{entry['file']} ({entry['bytes']:,} bytes), checked against Keras: {check}")
  print(f"model card: {cfg.out}/{exporter.CARD_MD}")


if __name__ == "__main__":
  cli.run("mammo_train.export", config.define_export_flags, main)
