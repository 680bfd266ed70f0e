"""Prediction on new source files: discovery, breast placement, preparing in a pool, scoring, writing."""
