"""The built-in tracking backends bound to their code (declared in ``pipeline.registry.TRACKING_BACKENDS``).

``pipeline.tracking.api.tracker_for`` calls ``bind`` before it looks a backend up. A new backend is a
module in this folder with a class implementing ``pipeline.tracking.contract.Tracker`` (constructed as
``cls(params, location)``), its entry in ``BUILT_IN`` and
its declaration in ``pipeline/registry.py``; ``mlflow.backend: <name>`` in params.yaml selects it.
"""

from __future__ import annotations

from pipeline.registry import TRACKING_BACKENDS
from pipeline.tracking.mlflow_backend import MlflowTracker

BUILT_IN = {"mlflow": MlflowTracker}


def bind() -> None:
    """Bind each built-in backend to its declared name (called before a lookup, not at import: a lookup
    loads the plugins, whose failure must come with validation's one-line error)."""
    for name, tracker in BUILT_IN.items():
        if name not in TRACKING_BACKENDS.implemented():
            TRACKING_BACKENDS.implement(name, tracker)
