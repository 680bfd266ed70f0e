"""Prediction on new files: the model stage and its runtimes."""
