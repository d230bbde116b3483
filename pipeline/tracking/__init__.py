"""MLflow: the only package that imports mlflow (store, run layout, trial logging, registry)."""
