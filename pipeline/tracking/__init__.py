"""Tracking: the seam the pipeline calls (``api``) and its MLflow backend, the only package that imports mlflow."""
