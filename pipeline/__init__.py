"""CNN tuning pipeline: DVC stages, KerasTuner search, MLflow tracking and registry."""

__version__ = "0.1.0"
