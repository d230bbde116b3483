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
from pipeline.errors import PipelineError, TrackingError
from pipeline.objective import direction_of
from pipeline.tuning.callbacks import TrackingLost
from pipeline.tuning.progress import ProgressPrinter
from pipeline.tuning.records import TrialRecord
from pipeline.tuning.results import best_record
from pipeline.tuning.tracker import FAILED, FINISHED, KILLED
from pipeline.tuning.tuners import ProcessRecycle, TrackedTunerMixin, expected_trials

STATE_NAME = "pipeline_search.json"
ENDED = ("COMPLETED", "FAILED")


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
    """Run (or resume) the search to its end; Ctrl-C / SIGTERM ends the running trial KILLED."""
    project_dir = Path(tuner.project_dir)
    previous = [r for r in collect_records(tuner) if r.status in (FINISHED, FAILED)]
    best = best_record(previous, tune.objective)
    expected = expected_trials(tune)
    tuner.trials_left = max(expected - len(previous), 0)
    tuner.on_trial_done = ProgressPrinter(
        expected, direction_of(tune.objective), done=len(previous),
        best=(best.trial_id, best.score) if best else None, stream=stream,
    )
    x, y, x_val, y_val = data
    callbacks = [keras.callbacks.EarlyStopping(monitor=tune.objective, mode=direction_of(tune.objective),
                                               patience=tune.early_stopping_patience)]
    # Keras runs a full garbage collection before every trial; with TensorFlow's millions of
    # import-time objects moved out of its reach, each costs ~0.02 s instead of ~0.4 s.
    gc.freeze()
    start = time.perf_counter()
    try:
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=tune.max_epochs, callbacks=callbacks,
                     verbose=1 if tune.keras_verbose else 0)
    except ProcessRecycle:
        raise  # no trial is running: nothing to close
    except (TrackingError, TrackingLost) as error:
        # The store is gone: KILLED (not FAILED), so KerasTuner retries the trial on resume.
        tuner.abort_active_trial(KILLED, str(error), tell_tracker=False)
        raise PipelineError(str(error)) from None
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            tuner.abort_active_trial(KILLED, "interrupted")
        else:
            tuner.abort_active_trial(FAILED, f"{type(error).__name__}: {error}")
        raise
    finally:
        wall_seconds = add_wall_seconds(project_dir, time.perf_counter() - start)
    records = collect_records(tuner)
    return SearchResult(records, best_record(records, tune.objective), wall_seconds, project_dir)


def add_wall_seconds(project_dir: Path, seconds: float) -> float:
    """Add this session's wall time to the search's total (kept next to the tuner state); return the total."""
    state_path = Path(project_dir) / STATE_NAME
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"wall_seconds": 0.0}
    state["wall_seconds"] += seconds
    write_text_atomic(state_path, json.dumps(state))
    return state["wall_seconds"]
