"""Prediction on new source files: discovery, breast placement, preparing in a pool, scoring with a chosen
runtime, writing, the review page."""
