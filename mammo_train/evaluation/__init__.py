"""Judging a model: metrics, operating points, calibration, subgroups, baselines, the report, saliency,
comparison of models, the reporting checklist."""
