"""The MLflow run ``train-<time>`` of the retrained best model.

The train stage opens it, logs every epoch as it ends, and writes its ids to
``results/train/run.json``; evaluate and register reopen it by id to add test metrics
and the model. Keras is not imported here: the stage wraps ``log_epoch`` in a callback.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import TrackingError
from pipeline.tracking.context import context_tags, git_commit
from pipeline.tracking.contract import RunRef
from pipeline.tracking.contract import read_train_run as read_train_run  # its old home: tests import it from here

# MLflow's run-id environment variable: `mlflow run` sets it so that the entry point's
# code logs into the project's run. The train run is a run of its own in the configured
# experiment, so the variable is taken out (and kept as a tag) before starting it.
_PROJECT_RUN_ENV = "MLFLOW_RUN_ID"
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./ ]")
# The per-epoch learning rate is a metric named ``lr``: the param ``learning_rate`` is the
# initial rate (a search-space key), and one name for both made MLflow's columns ambiguous.
_RENAMED_METRICS = {"learning_rate": "lr"}


def metric_key(name: str) -> str:
    """The MLflow metric name of ``name``: ``lr`` for the learning rate, rejected characters as ``_``."""
    return _METRIC_NAME.sub("_", _RENAMED_METRICS.get(name, name))


def _param_value(value: Any) -> str:
    return str(value)[:6000]  # MLflow's limit on a param value


class TrainRun:
    """An open ``train-<time>`` run; use as a context manager (failed on exception)."""

    def __init__(self, tracking_uri: str, hparams: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        import mlflow

        self._mlflow = mlflow
        project_run = os.environ.pop(_PROJECT_RUN_ENV, None)
        all_tags = {**context_tags(), **{k: str(v) for k, v in tags.items() if v is not None}}
        if project_run:
            all_tags["mlflow_project_run_id"] = project_run
        commit = git_commit()
        if commit:
            all_tags["mlflow.source.git.commit"] = commit
        self.run_name = "train-" + time.strftime("%Y%m%d-%H%M%S")
        self.tracking_uri = tracking_uri
        try:
            self._run = mlflow.start_run(run_name=self.run_name, tags=all_tags)
            if hparams:
                mlflow.log_params({k: _param_value(v) for k, v in hparams.items()})
        except Exception as error:  # noqa: BLE001 - a store failure is one clear line
            raise TrackingError(f"MLflow store {tracking_uri}: cannot start the train run: {error}") from None
        self.run_id = self._run.info.run_id
        self.experiment_id = self._run.info.experiment_id

    @property
    def ref(self) -> RunRef:
        return RunRef(self.run_id, self.run_name, self.experiment_id)

    def log_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None:
        """Metrics of one finished epoch, ``epoch`` counted from 1 (the MLflow step)."""
        metrics = {metric_key(k): float(v) for k, v in logs.items()
                   if isinstance(v, (int, float)) and math.isfinite(float(v))}
        if metrics:
            self._mlflow.log_metrics(metrics, step=epoch)

    def log_summary(self, metrics: Mapping[str, float], tags: Mapping[str, str] | None = None) -> None:
        self._mlflow.log_metrics({metric_key(k): float(v) for k, v in metrics.items()})
        if tags:
            self._mlflow.set_tags(dict(tags))

    def log_artifact(self, path: Path) -> None:
        self._mlflow.log_artifact(str(path))

    def __enter__(self) -> TrainRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        self._mlflow.end_run(status="FINISHED" if exc_type is None else "FAILED")


def log_to_run(run_id: str, metrics: Mapping[str, float], artifacts: list[Path] | None = None,
               tags: Mapping[str, str] | None = None) -> None:
    """Add metrics/artifacts/tags to a finished run (evaluate's test metrics on the train run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_run(run_id)
    except Exception:  # noqa: BLE001
        raise TrackingError(f"train run {run_id} is not in the MLflow store {client.tracking_uri}; "
                            "run `python -m pipeline train` (or `dvc repro`) again") from None
    timestamp = int(time.time() * 1000)
    from mlflow.entities import Metric

    batch = [Metric(metric_key(k), float(v), timestamp, 0) for k, v in metrics.items()
             if math.isfinite(float(v))]
    client.log_batch(run_id, metrics=batch, tags=[])
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    for path in artifacts or []:
        client.log_artifact(run_id, str(path))
