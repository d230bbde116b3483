"""The hyperparameter search: sessions, tuners that record every trial, BOHB, distributed workers.

Imports no MLflow: trials are reported to a ``TrialTracker`` (``tracker.py``), which
``pipeline.tracking.runs`` implements with MLflow and ``NullTracker`` with nothing (benchmarks,
tests). ``session.py`` runs one search and writes its outputs; ``tuners.py`` is the one adapter
to KerasTuner's internals; ``bohb.py`` the model-based oracle; ``distributed.py``/``worker.py``
KerasTuner's chief/worker mode.
"""
