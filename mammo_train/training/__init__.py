"""Fitting: set-up (seeds, precision, strategy), the training loop, crash-safe checkpoints, multi-worker, the search."""
