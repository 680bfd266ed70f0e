"""The trainer: `python -m mammo_train --dataset=... --model=... --workdir=...`, and its commands.

Commands (`__main__`, `tune`, `evaluate`, `baselines`, `predict`, `export`)
are leaves: flags (`config`) -> one frozen config -> one call into the
library -> exit code. The library: `inputs` (pipelines), `models` (Keras
only), `training`, `evaluation`, `inference`, `deployment`, and `run_folder`,
the one owner of a run folder. docs/architecture.md has the map.
"""
