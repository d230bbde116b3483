"""The tracking seam: the pipeline's own types and the ``Tracker`` the stages, the search and the ablation call.

A backend (MLflow: ``pipeline.tracking.mlflow_backend``) implements ``Tracker`` and is chosen by
``mlflow.backend`` in params.yaml, a name in ``pipeline.registry.TRACKING_BACKENDS``. Nothing outside
``pipeline/tracking/`` sees a backend's ids, URIs or objects: a run is a ``RunRef``, a registered
model a ``ModelRef``, an alias one of ``ALIASES``; what a user types after ``--model`` becomes a
``ModelLocator`` (a ``.keras`` file, or whatever address the backend parses: ``models:/name@alias``
for MLflow). ``python -m pipeline.devtools.tracking_seam`` counts the files that still leak.

No backend is imported here (validation runs before MLflow loads); ``tracker_for`` imports the
chosen one when a stage asks for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.tracking.contract import (
    ALIASES,
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    ModelLocator,
    ModelRef,
    RunLog,
    RunRef,
    Tracker,
    read_train_run,
)


def tracker_for(params: Any, location: str | None = None) -> Tracker:
    """The backend ``params.mlflow.backend`` names, for ``params``'s store (not connected yet).

    ``location``: a store that is already configured (tests and benchmarks pass what ``connect`` used).
    """
    return _backend(params.mlflow.backend)(params, location)


def open_tracker(params: Any) -> Tracker:
    """``tracker_for(params)``, connected: fails in seconds with one line when the store is unusable."""
    return tracker_for(params).connect()


def locate_model(params: Any, text: str | None) -> tuple[ModelLocator, Tracker | None]:
    """What ``predict --model`` names (default: the ``champion`` of ``register.model_name``), and the
    connected tracker when it is a tracked model (None for a ``.keras`` file)."""
    if text is not None and text.endswith(".keras") and "://" not in text:
        return ModelLocator(text, file=Path(text)), None
    tracker = tracker_for(params)
    model = tracker.parse_model(text) if text is not None else \
        tracker.model_at_alias(params.register.model_name, CHAMPION)
    return ModelLocator(text or model.address, model=model), tracker.connect()


def child_runs(settings: Mapping[str, Any]) -> Any:
    """The ablation's child runs in a worker process, from ``child_settings()`` (it names its backend)."""
    return _backend(str(settings["backend"])).ablation_children_from(settings)


def _backend(name: str) -> Any:
    """The ``Tracker`` class of backend ``name`` (the built-in ones bound first; a plugin binds its own)."""
    from pipeline.registry import TRACKING_BACKENDS
    from pipeline.tracking.backends import bind

    bind()
    return TRACKING_BACKENDS.implementation(name)


__all__ = ["ALIASES", "CHALLENGER", "CHAMPION", "PREVIOUS_CHAMPION", "ModelLocator",
           "ModelRef", "RunLog", "RunRef", "Tracker", "child_runs", "locate_model", "open_tracker",
           "read_train_run", "tracker_for"]
