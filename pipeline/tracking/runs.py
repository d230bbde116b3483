"""The run layout of a search: a parent run per search, a nested child run per trial.

Everything goes through an explicit ``MlflowClient`` and run ids (no fluent active run), so a
trial can be logged from any process that knows the tracking URI and the parent run id.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID

from pipeline.errors import TrackingError
from pipeline.tracking.context import context_tags, git_commit
from pipeline.tracking.contract import RunRef
from pipeline.tracking.redact import redact
from pipeline.tracking.retry import RetryingClient
from pipeline.tracking.train_run import metric_key

SEARCH_HASH_TAG = "search_hash"
RUN_TYPE_TAG = "run_type"
MAX_BATCH = 100  # MLflow's log_batch accepts at most 100 params per call
_DISK_ERRORS = re.compile(r"disk I/O error|database or disk is full", re.IGNORECASE)


def _now_ms() -> int:
    return int(time.time() * 1000)


class _OutageClient:
    """A client whose failures (after MLflow's bounded HTTP retries) are one ``TrackingError`` line."""

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self._client, self._uri = client, tracking_uri

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return call(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - MlflowException, requests and SQL errors alike
                first = redact(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
                if _DISK_ERRORS.search(first):  # SQLite's words for a full disk or a file size limit
                    first += " (is the disk full?)"
                raise TrackingError(f"the tracking store {redact(self._uri)} failed: {first[:200]}; finished "
                                    "trials are kept: rerun when it is back to resume the search") from None

        return guarded


def _tracking_client(tracking_uri: str) -> Any:
    """An MLflow client with bounded retries whose failures are one ``TrackingError`` line."""
    return _OutageClient(RetryingClient(MlflowClient(tracking_uri)), tracking_uri)


class TrialRunLogger:
    """``pipeline.tuning.tracker.TrialTracker`` on MLflow: child runs of ``parent_run_id``."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, search_hash: str,
                 tags: dict[str, str] | None = None) -> None:
        self.client: Any = _tracking_client(tracking_uri)
        self.experiment_id, self.parent_run_id, self.search_hash = experiment_id, parent_run_id, search_hash
        self.tags = dict(tags or {})  # on every child run, e.g. {"worker": "tuner1"} in a distributed search
        self._finished: dict[str, str] | None = None  # trial id -> its FINISHED run, read at the first trial
        self._already_logged: set[str] = set()  # finished runs handed out again: nothing more is logged to them

    def finished_trial_runs(self) -> dict[str, str]:
        """trial id -> run id of the search's child runs that ended FINISHED (earlier sessions included)."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=50000,
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}' and attributes.status = 'FINISHED'")
        return {run.data.tags["trial_id"]: run.info.run_id for run in runs if "trial_id" in run.data.tags}

    def start_trial(self, trial_id: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        if self._finished is None:
            self._finished = self.finished_trial_runs()
        if trial_id in self._finished:
            # A trial this search already logged as finished, handed out again (a resume from a state
            # saved before its end was): its run stays as it was, no second run for one trial.
            self._already_logged.add(self._finished[trial_id])
            return self._finished[trial_id]
        run_tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, RUN_TYPE_TAG: "trial",
                    SEARCH_HASH_TAG: self.search_hash, **context_tags(), **self.tags, **tags}
        run = self.client.create_run(self.experiment_id, tags=run_tags, run_name=f"trial-{trial_id}")
        run_id = run.info.run_id
        items = [Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_BATCH])
        return run_id

    def log_epoch(self, run_id: str | None, step: int, metrics: dict[str, float]) -> None:
        if run_id is None or run_id in self._already_logged:
            return
        stamp = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(metric_key(k), float(v), stamp, step)
                                               for k, v in metrics.items()])

    def end_trial(self, run_id: str | None, status: str, metrics: dict[str, float], tags: dict[str, str]) -> None:
        if run_id is None or run_id in self._already_logged:
            return
        stamp = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(metric_key(k), float(v), stamp, 0) for k, v in metrics.items()],
                              tags=[RunTag(k, str(v)) for k, v in tags.items()])
        self.client.set_terminated(run_id, status=status)

    def trial_runs(self) -> list[Any]:
        """All child runs of the search (every status), oldest first."""
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.parent_run_id}'",
            max_results=50000, order_by=["attribute.start_time ASC"],
        )

    def close_leftover_runs(self, ended: dict[str, str], worker: str | None = None) -> int:
        """Child runs left RUNNING by a kill: the status the trial reached (``ended[run_id]``) or KILLED.

        ``worker``: only the runs of that worker (tag ``worker``), e.g. after that process died.
        """
        count = 0
        for run in self.trial_runs():
            if worker is not None and run.data.tags.get("worker") != worker:
                continue
            if run.info.status == "RUNNING":
                status = ended.get(run.info.run_id, "KILLED")
                if status == "KILLED":
                    self.client.set_tag(run.info.run_id, "error", "interrupted (found running on resume)")
                self.client.set_terminated(run.info.run_id, status=status)
                count += 1
        return count


class SearchRun:
    """The parent run of one search, created or (on resume) found again by its search hash."""

    def __init__(self, tracking_uri: str, experiment_id: str, run_id: str, search_hash: str, resumed: bool) -> None:
        self.tracking_uri, self.experiment_id, self.run_id = tracking_uri, experiment_id, run_id
        self.search_hash, self.resumed = search_hash, resumed
        self.client: Any = _tracking_client(tracking_uri)

    @classmethod
    def open(cls, tracking_uri: str, experiment_name: str, search_hash: str, *, tuner: str, resume: bool,
             params: dict[str, str], tags: dict[str, str], dataset: tuple[Any, Any, str, str] | None = None,
             ) -> SearchRun:
        """Reuse the newest parent run tagged with ``search_hash`` if ``resume``, else start one.

        ``dataset``: ``(x, y, fingerprint, source)`` logged as the run's training input.
        """
        client: Any = RetryingClient(MlflowClient(tracking_uri))
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            raise TrackingError(f"MLflow experiment {experiment_name!r} not found in {tracking_uri}")
        experiment_id = experiment.experiment_id
        if resume:
            found = client.search_runs(
                [experiment_id],
                filter_string=f"tags.{SEARCH_HASH_TAG} = '{search_hash}' and tags.{RUN_TYPE_TAG} = 'search'",
                max_results=1, order_by=["attribute.start_time DESC"],
            )
            if found:
                run_id = found[0].info.run_id
                client.update_run(run_id, status="RUNNING")
                return cls(tracking_uri, experiment_id, run_id, search_hash, resumed=True)
        run_tags = {RUN_TYPE_TAG: "search", SEARCH_HASH_TAG: search_hash, "tuner": tuner, **context_tags(), **tags}
        commit = git_commit()
        if commit:
            run_tags[MLFLOW_GIT_COMMIT] = commit
        name = f"search-{tuner}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_id = client.create_run(experiment_id, tags=run_tags, run_name=name).info.run_id
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), MAX_BATCH):
            client.log_batch(run_id, params=items[start : start + MAX_BATCH])
        if dataset is not None:
            _log_dataset(client, run_id, *dataset)
        return cls(tracking_uri, experiment_id, run_id, search_hash, resumed=False)

    @classmethod
    def find(cls, tracking_uri: str, experiment_name: str, search_hash: str) -> SearchRun | None:
        """The newest parent run of ``search_hash`` (a worker host joining a search the chief opened)."""
        client: Any = RetryingClient(MlflowClient(tracking_uri))
        experiment = client.get_experiment_by_name(experiment_name)
        if experiment is None:
            return None
        found = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.{SEARCH_HASH_TAG} = '{search_hash}' and tags.{RUN_TYPE_TAG} = 'search'",
            max_results=1, order_by=["attribute.start_time DESC"],
        )
        if not found:
            return None
        return cls(tracking_uri, experiment.experiment_id, found[0].info.run_id, search_hash, resumed=True)

    @property
    def ref(self) -> RunRef:
        return RunRef(self.run_id, experiment=self.experiment_id)

    def trial_logger(self, tags: dict[str, str] | None = None) -> TrialRunLogger:
        return TrialRunLogger(self.tracking_uri, self.experiment_id, self.run_id, self.search_hash, tags)

    def worker_environment(self) -> dict[str, str]:
        """What a worker process needs to log its trials under this run (``trial_logger_from_environment``)."""
        return {_ENV_TRACKING_URI: self.tracking_uri, _ENV_EXPERIMENT: self.experiment_id,
                _ENV_PARENT_RUN: self.run_id, _ENV_SEARCH_HASH: self.search_hash}

    def finish(self, metrics: dict[str, float], tags: dict[str, str], artifacts: Iterable[Path],
               status: str = "FINISHED") -> None:
        stamp = _now_ms()
        # The best trial's own numbers under the children's names, so the parent's row in the
        # runs table is not "-" in every metric column; the search's own metrics win a clash.
        copied = {k: v for k, v in self._trial_metrics(tags.get("best_trial_id")).items() if k not in metrics}
        batch = [Metric(k, float(v), stamp, 0) for k, v in metrics.items()]
        batch += [Metric(k, value, stamp, step) for k, (value, step) in copied.items()]
        self.client.log_batch(self.run_id, metrics=batch,
                              tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
        for path in artifacts:
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status=status)

    def _trial_metrics(self, trial_id: str | None) -> dict[str, tuple[float, int]]:
        """``{name: (latest value, its step)}`` of trial ``trial_id``'s newest child run.

        The step is kept so that, in the chart view, the parent's point lands on the end of the
        best trial's curve instead of at epoch 0.
        """
        if not trial_id:
            return {}
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.{MLFLOW_PARENT_RUN_ID} = '{self.run_id}' and tags.trial_id = '{trial_id}'",
            max_results=1, order_by=["attribute.start_time DESC"])
        if not found:
            return {}
        latest = {}
        for name in found[0].data.metrics:
            last = max(self.client.get_metric_history(found[0].info.run_id, name), key=lambda m: (m.step, m.timestamp))
            latest[name] = (float(last.value), int(last.step))
        return latest

    def abort(self, status: str = "KILLED", error: str | None = None) -> None:
        if error:
            self.client.set_tag(self.run_id, "error", error[:5000])
        self.client.set_terminated(self.run_id, status=status)


def _log_dataset(client: MlflowClient, run_id: str, x: Any, y: Any, fingerprint: str, source: str) -> None:
    import warnings

    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    with warnings.catch_warnings():  # a local path matches two equivalent source types; either is right
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        dataset = mlflow.data.from_numpy(features=x, targets=y, source=source,
                                         name=f"train-{fingerprint[:12]}", digest=fingerprint[:32])
    client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(),
                                                     tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train")])])


# How a distributed search hands its tracking to worker processes: MLflow's own variable for
# the store, ours for the run the trials nest under.
_ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
_ENV_EXPERIMENT = "PIPELINE_EXPERIMENT_ID"
_ENV_PARENT_RUN = "PIPELINE_PARENT_RUN_ID"
_ENV_SEARCH_HASH = "PIPELINE_TRACKED_SEARCH_HASH"


def trial_logger_from_environment(tags: dict[str, str] | None = None) -> TrialRunLogger | None:
    """The worker's side of ``SearchRun.worker_environment``; None when the search is not tracked."""
    if not os.environ.get(_ENV_PARENT_RUN):
        return None
    return TrialRunLogger(os.environ[_ENV_TRACKING_URI], os.environ[_ENV_EXPERIMENT], os.environ[_ENV_PARENT_RUN],
                          os.environ[_ENV_SEARCH_HASH], tags=tags)


def end_open_run(tracking_uri: str, run_id: str, status: str, reason: str) -> None:
    """End a run a previous process left open on purpose (a search continued in a fresh process)."""
    client: Any = _tracking_client(tracking_uri)
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        client.set_tag(run_id, "error", reason[:5000])
        client.set_terminated(run_id, status=status)
