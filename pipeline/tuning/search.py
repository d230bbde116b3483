"""One search from start (or resume) to its records: the tuner, the tracking hooks, progress.

The caller provides the tracking (``pipeline.tracking.runs.TrialRunLogger`` or ``NullTracker``)
and writes the outputs; this module only runs KerasTuner and collects ``TrialRecord``s.
"""

from __future__ import annotations

import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from pipeline.atomic import write_text_atomic
from pipeline.errors import TrackingError
from pipeline.objective import direction_of
from pipeline.tuning.callbacks import TrackingLost
from pipeline.tuning.progress import ProgressPrinter
from pipeline.tuning.records import TrialRecord
from pipeline.tuning.results import best_record
from pipeline.tuning.tracker import FAILED, FINISHED, KILLED
from pipeline.tuning.tuners import ProcessRecycle, TrackedTunerMixin, expected_trials

STATE_NAME = "pipeline_search.json"


@dataclass
class SearchResult:
    records: list[TrialRecord]
    best: TrialRecord | None
    wall_seconds: float  # all sessions of this search together
    project_dir: Path


def collect_records(tuner: TrackedTunerMixin) -> list[TrialRecord]:
    """A record per trial the oracle knows, in trial-id order (trials without one: status only)."""
    records = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        record = TrialRecord.load(tuner.get_trial_dir(trial_id)) or TrialRecord(trial_id=trial_id)
        if trial.status == "COMPLETED":
            record.status = FINISHED
        elif trial.status == "FAILED":
            record.status = FAILED
        elif record.status == "RUNNING":
            record.status = KILLED
        records.append(record)
    return records


def ended_run_statuses(records: list[TrialRecord]) -> dict[str, str]:
    """run id -> final status, for child runs a kill left RUNNING after their trial had ended."""
    return {r.run_id: r.status for r in records if r.run_id and r.status in (FINISHED, FAILED)}


def run_search(tuner: TrackedTunerMixin, tune: Any, data: tuple[Any, Any, Any, Any], *,
               stream: Any = None) -> SearchResult:
    """Run (or resume) the search to its end in this process; Ctrl-C / SIGTERM ends the running trial KILLED."""
    project_dir = Path(tuner.project_dir)
    previous = [r for r in collect_records(tuner) if r.status in (FINISHED, FAILED)]
    tuner.trials_left = max(expected_trials(tune) - len(previous), 0)  # no fresh process after the last trial
    start = time.perf_counter()
    try:
        run_trials(tuner, tune, data, stream=stream)
    finally:
        wall_seconds = add_wall_seconds(project_dir, time.perf_counter() - start)
    records = collect_records(tuner)
    return SearchResult(records, best_record(records, tune.objective), wall_seconds, project_dir)


def run_trials(tuner: TrackedTunerMixin, tune: Any, data: tuple[Any, Any, Any, Any], *, stream: Any = None) -> None:
    """The search loop: trials until the oracle stops handing them out, in this process (``run_search``)
    or in a distributed worker (``pipeline.tuning.worker``), with the same fault handling.

    A tracking outage ends the running trial KILLED (KerasTuner retries it on resume) without
    calling the dead store, and is raised as one ``TrackingError`` line; Ctrl-C / SIGTERM ends it
    KILLED; any other error ends it FAILED and is raised as is.
    """
    tuner.on_trial_done = SearchProgress(Path(tuner.project_dir), expected_trials(tune), tune.objective,
                                         stream=stream)
    x, y, x_val, y_val = data
    callbacks = [keras.callbacks.EarlyStopping(monitor=tune.objective, mode=direction_of(tune.objective),
                                               patience=tune.early_stopping_patience)]
    # Keras runs a full garbage collection before every trial; with TensorFlow's millions of
    # import-time objects moved out of its reach, each costs ~0.02 s instead of ~0.4 s.
    gc.freeze()
    try:
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=tune.max_epochs, callbacks=callbacks,
                     verbose=1 if tune.keras_verbose else 0)
    except ProcessRecycle:
        raise  # no trial is running: nothing to close
    except (TrackingError, TrackingLost) as error:
        # The store is gone: KILLED (not FAILED), so KerasTuner retries the trial on resume; the
        # record says so and the resumed search closes the trial's run.
        tuner.abort_active_trial(KILLED, str(error), tell_tracker=False)
        raise TrackingError(str(error)) from None
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        try:
            tuner.abort_active_trial(KILLED if interrupted else FAILED,
                                     "interrupted" if interrupted else f"{type(error).__name__}: {error}")
        except TrackingError:
            pass  # the store failed too: the record says it, the resumed search closes the run
        raise


class SearchProgress:
    """A ``ProgressPrinter`` line per trial over the whole search: the count and the best come from the
    trial records in the tuner directory, so earlier sessions and other workers' trials are included."""

    def __init__(self, project_dir: Path, expected: int, objective: str, *, stream: Any = None) -> None:
        self.project_dir, self.objective = project_dir, objective
        self.printer = ProgressPrinter(expected, direction_of(objective), stream=stream)

    def __call__(self, record: TrialRecord) -> None:
        others = [r for d in sorted(self.project_dir.glob("trial_*"))
                  if (r := TrialRecord.load(d)) is not None and r.trial_id != record.trial_id]
        ended = [r for r in others if r.status in (FINISHED, FAILED)]
        best = best_record(ended, self.objective)
        self.printer.done = len(ended)
        self.printer.best = (best.trial_id, best.score) if best else None
        self.printer(record)


def add_wall_seconds(project_dir: Path, seconds: float) -> float:
    """Add this session's wall time to the search's total (kept next to the tuner state); return the total."""
    state_path = Path(project_dir) / STATE_NAME
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"wall_seconds": 0.0}
    state["wall_seconds"] += seconds
    write_text_atomic(state_path, json.dumps(state))
    return state["wall_seconds"]
