"""The hyperparameter search: KerasTuner tuners that record every trial, and the stage's outputs.

Knows nothing of MLflow: trials are reported to a ``TrialTracker`` (``pipeline.tracking.runs``
implements it with MLflow; ``NullTracker`` records nothing, for benchmarks and tests).
"""
