"""The MLflow layout of an ablation: a parent run ``ablation-<time>``, a nested child run per variant and seed.

Children carry the full configuration as params (the same columns as the search's trial runs,
so the two line up in the runs table) plus ``dimension``, ``value`` and ``seed``, the changed
dimension and value also as tags, and per-epoch metrics with step = epoch. The parent holds the
ablation's settings, each variant's effect and interval, results.json and the figure.
``ChildRuns`` implements ``pipeline.ablation.runs.AblationTracker``, in the stage's process or
in a worker's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

from pipeline.errors import TrackingError
from pipeline.tracking.context import context_tags, git_commit
from pipeline.tracking.contract import RunRef
from pipeline.tracking.retry import RetryingClient
from pipeline.tracking.train_run import metric_key

RUN_TYPE_TAG = "run_type"
MAX_BATCH = 100  # MLflow's log_batch takes at most 100 params per call
MAX_PARAM = 6000  # MLflow's limit on a param value
BEST = "(best)"  # dimension and value of the best configuration's own runs


def _now_ms() -> int:
    return int(time.time() * 1000)


def _metrics(values: Mapping[str, Any], step: int = 0) -> list[Metric]:
    stamp = _now_ms()
    return [Metric(metric_key(k), float(v), stamp, step) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]


class ChildRuns:
    """The nested runs of ``parent_run_id``, one per variant and seed; usable from any process.

    Implements ``pipeline.ablation.runs.AblationTracker``; worker processes open their own
    with the parent's ids (``AblationRun.child_settings``).
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 tags: Mapping[str, str] | None = None) -> None:
        self.client: Any = RetryingClient(MlflowClient(tracking_uri))
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.tags = dict(tags or {})  # on every child, e.g. the data fingerprint
        self._pending: dict[str, list[Metric]] = {}

    def start_run(self, variant: Any, seed: int) -> str:
        """A child run for ``variant`` (``pipeline.ablation.plan.Variant``) trained with ``seed``."""
        dimension = variant.dimension or BEST
        value = BEST if variant.dimension is None else str(variant.value)
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, RUN_TYPE_TAG: "ablation_variant", **context_tags(),
                **self.tags, "ablation_dimension": dimension, "ablation_value": value,
                "ablation_role": "best" if variant.dimension is None else "variant", "seed": str(seed),
                "ablation_phase": getattr(variant, "phase", "verdict")}  # rate: a learning-rate selection run
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{variant.name}-seed{seed}")
        _log_params(self.client, run.info.run_id, {**variant.values, "dimension": dimension, "value": value,
                                                    "seed": seed})
        return run.info.run_id

    def log_epoch(self, run_id: str | None, epoch: int, logs: Mapping[str, float]) -> None:
        """Kept until the run ends: a run takes seconds, and one write per run instead of one per epoch
        is a few percent of the stage's time on a busy SQLite store."""
        if run_id is not None:
            self._pending.setdefault(run_id, []).extend(_metrics(logs, epoch))

    def end_run(self, run_id: str | None, metrics: Mapping[str, float], status: str) -> None:
        if run_id is None:
            return
        batch = self._pending.pop(run_id, []) + _metrics(metrics)
        for start in range(0, len(batch), 1000):  # log_batch's limit on metrics
            self.client.log_batch(run_id, metrics=batch[start:start + 1000])
        self.client.set_terminated(run_id, status=status)


def _log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    items = [Param(k, str(v)[:MAX_PARAM]) for k, v in params.items()]
    for start in range(0, len(items), MAX_BATCH):
        client.log_batch(run_id, params=items[start:start + MAX_BATCH])


class AblationRun:
    """An open ``ablation-<time>`` run; a context manager that ends it FAILED (KILLED on Ctrl-C) on an exception.

    ``start_run``/``log_epoch``/``end_run`` make its nested runs in this process (``ChildRuns``).
    """

    def __init__(self, tracking_uri: str, experiment_name: str, params: Mapping[str, Any],
                 tags: Mapping[str, Any], child_tags: Mapping[str, str] | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.client: Any = RetryingClient(MlflowClient(tracking_uri))
        try:
            experiment = self.client.get_experiment_by_name(experiment_name)
            if experiment is None:
                raise TrackingError(f"MLflow experiment {experiment_name!r} not found in {tracking_uri}")
            self.experiment_id = experiment.experiment_id
            run_tags = {RUN_TYPE_TAG: "ablation", **context_tags(),
                        **{k: str(v) for k, v in tags.items() if v is not None}}
            commit = git_commit()
            if commit:
                run_tags[MLFLOW_GIT_COMMIT] = commit
            self.run_name = "ablation-" + time.strftime("%Y%m%d-%H%M%S")
            self.run_id = self.client.create_run(self.experiment_id, tags=run_tags, run_name=self.run_name).info.run_id
            _log_params(self.client, self.run_id, params)
        except TrackingError:
            raise
        except Exception as error:  # noqa: BLE001 - a store failure is one clear line
            raise TrackingError(f"MLflow store {tracking_uri}: cannot start the ablation run: {error}") from None
        self.children = ChildRuns(tracking_uri, self.experiment_id, self.run_id, child_tags)
        self.start_run, self.log_epoch, self.end_run = (self.children.start_run, self.children.log_epoch,
                                                        self.children.end_run)
        self._ended = False

    @property
    def ref(self) -> RunRef:
        return RunRef(self.run_id, self.run_name, self.experiment_id)

    def child_settings(self) -> dict[str, Any]:
        """What a worker process needs for ``ChildRuns`` (``pipeline.tracking.api.child_runs``)."""
        return {"backend": "mlflow", "tracking_uri": self.tracking_uri, "experiment_id": self.experiment_id,
                "parent_run_id": self.run_id, "tags": self.children.tags}

    def finish(self, metrics: Mapping[str, float], tags: Mapping[str, Any], artifacts: Iterable[Path]) -> None:
        """The ablation's summary numbers and files on the parent run, which ends FINISHED."""
        batch = _metrics(metrics)
        for start in range(0, len(batch), 1000):  # log_batch's limit on metrics
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status="FINISHED")
        self._ended = True

    def __enter__(self) -> AblationRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc_type is None or self._ended:
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.client.set_tag(self.run_id, "error", f"{exc_type.__name__}: {exc}"[:5000])
            self.client.set_terminated(self.run_id, status=status)
        except Exception:  # noqa: BLE001, S110 - the original error is the one to show
            pass
