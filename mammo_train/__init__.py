"""The trainer: `python -m mammo_train --dataset=... --model=... --workdir=...`.

Reads the prepared mammo TFDS datasets (`data`), builds a classifier that takes
the stored uint8 image (`models`), trains it (`train`) and evaluates the best
model on the test split (`evaluate`). Flags live in `config`.
"""
