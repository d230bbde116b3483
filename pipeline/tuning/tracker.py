"""What a tuner tells the tracking side about its trials (implemented in ``pipeline.tracking``)."""

from __future__ import annotations

from typing import Any, Protocol

FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
# a trial record's only: handed out by the oracle, not started (tune.time_budget); run when the search resumes
NOT_STARTED = "NOT_STARTED"


class TrialTracker(Protocol):
    """Per-trial logging; every method takes the run id so any process can log any trial."""

    def start_trial(self, trial_id: str, params: dict[str, Any], tags: dict[str, str]) -> str | None: ...

    def log_epoch(self, run_id: str | None, step: int, metrics: dict[str, float]) -> None: ...

    def end_trial(self, run_id: str | None, status: str, metrics: dict[str, float],
                  tags: dict[str, str]) -> None: ...

    def close_leftover_runs(self, ended: dict[str, str], worker: str | None = None) -> int:
        """End runs a kill left RUNNING: ``ended`` maps run id -> final status, the rest end KILLED."""
        ...


class NullTracker:
    """Records nothing: the same search without tracking (``bench/tracking_overhead.py``)."""

    def start_trial(self, trial_id: str, params: dict[str, Any], tags: dict[str, str]) -> str | None:
        return None

    def log_epoch(self, run_id: str | None, step: int, metrics: dict[str, float]) -> None:
        return None

    def end_trial(self, run_id: str | None, status: str, metrics: dict[str, float],
                  tags: dict[str, str]) -> None:
        return None

    def close_leftover_runs(self, ended: dict[str, str], worker: str | None = None) -> int:
        return 0
