"""Evaluation library: metrics, operating point, calibration, subgroups, comparison, reporting checklist."""
