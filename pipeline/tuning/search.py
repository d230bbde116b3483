"""One search from start (or resume) to its records: the tuner, the tracking hooks, progress.

The caller provides the tracking (``pipeline.tracking.runs.TrialRunLogger`` or ``NullTracker``)
and writes the outputs; this module only runs KerasTuner and collects ``TrialRecord``s.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from pipeline.errors import TrackingError
from pipeline.objective import direction_of
from pipeline.time_budget import TimeBudget
from pipeline.tuning.callbacks import TrackingLost, TrialDeadline
from pipeline.tuning.progress import ProgressPrinter
from pipeline.tuning.records import TrialRecord, add_wall_seconds, collect_records
from pipeline.tuning.results import best_record
from pipeline.tuning.tracker import FAILED, FINISHED, KILLED
from pipeline.tuning.tuners import ProcessRecycle, TrackedTunerMixin, expected_trials


@dataclass
class SearchResult:
    records: list[TrialRecord]
    best: TrialRecord | None
    wall_seconds: float  # all sessions of this search together
    project_dir: Path
    budget: TimeBudget | None = None  # this invocation's tune.time_budget: spent, and whether it stopped the search


class BudgetSpent(Exception):  # noqa: N818 - a request, not an error
    """Raised between trials, before the oracle is asked for another one, once tune.time_budget is spent."""


def run_search(tuner: TrackedTunerMixin, tune: Any, data: tuple[Any, Any, Any, Any], *,
               stream: Any = None, budget: TimeBudget | None = None) -> SearchResult:
    """Run (or resume) the search to its end, or to the end of ``budget`` (default: ``tune.time_budget``
    from now), in this process; Ctrl-C / SIGTERM ends the running trial KILLED."""
    project_dir = Path(tuner.project_dir)
    previous = [r for r in collect_records(tuner) if r.status in (FINISHED, FAILED)]
    tuner.trials_left = max(expected_trials(tune) - len(previous), 0)  # no fresh process after the last trial
    start = time.perf_counter()
    try:
        budget = run_trials(tuner, tune, data, stream=stream, budget=budget)
    finally:
        wall_seconds = add_wall_seconds(project_dir, time.perf_counter() - start)
    records = collect_records(tuner)
    return SearchResult(records, best_record(records, tune.objective), wall_seconds, project_dir, budget)


def run_trials(tuner: TrackedTunerMixin, tune: Any, data: tuple[Any, Any, Any, Any], *, stream: Any = None,
               budget: TimeBudget | None = None) -> TimeBudget:
    """The search loop: trials until the oracle stops handing them out or ``budget`` (default:
    ``tune.time_budget`` from now) is spent, in this process (``run_search``) or in a distributed
    worker (``pipeline.tuning.worker``), with the same fault handling. Returns the budget, which
    says whether it stopped the search.

    A tracking outage ends the running trial KILLED (KerasTuner retries it on resume) without
    calling the dead store, and is raised as one ``TrackingError`` line; Ctrl-C / SIGTERM ends it
    KILLED; any other error ends it FAILED and is raised as is. A spent budget ends the running
    trial at its next epoch end (scored on what it reached) and starts no other.
    """
    budget = budget or TimeBudget(tune.time_budget, key="tune.time_budget")
    tuner.on_trial_done = SearchProgress(Path(tuner.project_dir), expected_trials(tune), tune.objective,
                                         stream=stream, budget=budget)
    x, y, x_val, y_val = data
    callbacks = [keras.callbacks.EarlyStopping(monitor=tune.objective, mode=direction_of(tune.objective),
                                               patience=tune.early_stopping_patience)]
    if budget.limited:
        callbacks.append(TrialDeadline(budget, lambda: running_trial(tuner)))
        stop = StopWhenSpent(tuner, budget, train_rows=len(x))
        tuner.pre_create_trial, tuner.admit_trial = stop, stop.admit
    # Keras runs a full garbage collection before every trial; with TensorFlow's millions of
    # import-time objects moved out of its reach, each costs ~0.02 s instead of ~0.4 s.
    gc.freeze()
    try:
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=tune.max_epochs, callbacks=callbacks,
                     verbose=1 if tune.keras_verbose else 0)
    except BudgetSpent:
        pass  # between trials, the oracle's state saved: a resumed search continues exactly here
    except ProcessRecycle:
        if not budget.is_spent():
            raise  # no trial is running: nothing to close
        budget.stop()  # no fresh process (seconds of imports) only to find the budget spent
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
    finally:
        if budget.limited:
            del tuner.pre_create_trial  # KerasTuner's own again
            tuner.admit_trial = None
    if budget.stopped:
        print(budget_line(tuner, tune, budget), file=stream, flush=True)
    return budget


def first_epoch_seconds(rows: int, ended: list[TrialRecord], parent: TrialRecord | None = None) -> float | None:
    """The least a trial's setup and first epoch on ``rows`` training rows may take, going by the trials
    ``ended`` in this process: their cheapest setup, plus ``rows`` at the seconds per row and epoch of
    ``parent`` (the trial it continues: the same model) or else of the cheapest of them. None: no
    trial to go by (the trials' rows unknown).

    A trial's epochs cost in proportion to its rows: under data fidelity a low rung trains on a
    sliver of the data, and the continuation of one of its trials on all of it costs ten times as
    much per epoch. Validation, a fixed cost per epoch, is counted per row too, which prices a
    continuation from a low rung above its cost: a search may stop one trial early, never one late.
    """
    timed = [r for r in ended if r.epochs_trained and r.train_rows and r.trial_seconds is not None]
    own = parent is not None and parent.epochs_trained and parent.train_rows
    basis = [parent] if own else timed
    if not basis:
        return None
    setup = min((max(r.trial_seconds - r.seconds, 0.0) for r in timed), default=0.0)
    per_row = min(r.seconds / (r.epochs_trained * r.train_rows) for r in basis)
    return setup + per_row * rows


class StopWhenSpent:
    """KerasTuner's ``pre_create_trial`` hook (called before the oracle hands out a trial), raising
    ``BudgetSpent`` once the budget is spent, or when what is left of it is less than the shortest trial
    of this process took (it would end past the budget: ``StopAtDeadline``'s rule, one trial up),
    unless the search is known to have no trial left; and the tuner's ``admit_trial`` (``admit``:
    called with the trial handed out), raising it when the trial's first epoch, priced by its own
    rows, would end past the budget.

    Each invocation runs at least one trial (as Optuna's ``timeout``, checked after a trial): a budget
    spent on start-up alone still moves the search forward, by one epoch at least. A process that
    continues the invocation (``budget.continues``: recycled after ``tune.trials_per_process``) has
    no trial free, and goes by the trials already in the search until it has run one of its own.
    """

    clock = staticmethod(time.monotonic)  # a test gives trials a known cost

    def __init__(self, tuner: TrackedTunerMixin, budget: TimeBudget, train_rows: int | None = None) -> None:
        self.tuner, self.budget, self.ask = tuner, budget, tuner.pre_create_trial
        self.train_rows = train_rows  # the search's training rows (a trial's fit may use fewer)
        # the search's finished trials when this process continues an invocation: what to go by at first
        self.before = [r for r in collect_records(tuner) if r.status == FINISHED] if budget.continues else []
        # seconds from one ask to the next: a whole trial, bookkeeping included
        self.shortest_trial = min((r.trial_seconds for r in self.before if r.trial_seconds), default=float("inf"))
        self._asked_at: float | None = None
        self._done_at_ask = 0

    def _free(self) -> bool:
        """The invocation's first trial: it starts whatever is left."""
        return self.tuner.trials_this_process == 0 and not self.budget.continues

    def __call__(self) -> None:
        tuner, budget, now = self.tuner, self.budget, self.clock()
        # one trial ran since the last ask (none did when a distributed oracle answered IDLE)
        if self._asked_at is not None and tuner.trials_this_process == self._done_at_ask + 1:
            self.shortest_trial = min(self.shortest_trial, now - self._asked_at)
        self._asked_at, self._done_at_ask = now, tuner.trials_this_process
        more_to_come = tuner.trials_left is None or tuner.trials_left > 0
        if more_to_come and not self._free():
            if budget.is_spent():
                budget.stop()
                raise BudgetSpent
            left = budget.left()
            if left is not None and left < self.shortest_trial:
                budget.close(f"no trial started with {left:.0f} s left: the shortest took {self.shortest_trial:.0f} s")
                raise BudgetSpent
        self.ask()

    def admit(self, trial: Any) -> None:
        """Set the trial aside (the oracle hands it out again on resume) and raise ``BudgetSpent`` when
        what is left of the budget would not hold its setup and first epoch (``first_epoch_seconds``).

        The shortest trial so far prices the next one too low where trials differ in rows: under
        data fidelity a trial on a twentieth of 48,000 images took 4 s, then the continuation of one
        on all of them started with 8 s left and ran a 70 s epoch past a 30-minute budget.
        """
        tuner, left = self.tuner, self.budget.left()
        if left is None or self.train_rows is None or self._free():
            return
        values = trial.hyperparameters.values
        rows_of = getattr(tuner.hypermodel, "trial_rows", None)
        rows = rows_of(trial.hyperparameters, self.train_rows) if rows_of else self.train_rows
        parent = self._record(values.get("tuner/trial_id"))
        need = first_epoch_seconds(rows, tuner.ended_here or self.before, parent)
        if need is None or left >= need:
            return
        note = (f"trial {trial.trial_id} not started with {left:.0f} s left: its first epoch on "
                f"{rows:,} images would take ~{need:.0f} s")
        tuner.set_aside(trial, f"not started: {note}; a resumed search runs it")
        self.budget.close(note)
        raise BudgetSpent

    def _record(self, trial_id: str | None) -> TrialRecord | None:
        """The record of ``trial_id`` as saved when it ended (in this process or an earlier one)."""
        return None if trial_id is None else TrialRecord.load(self.tuner.get_trial_dir(trial_id))


def running_trial(tuner: TrackedTunerMixin) -> str | None:
    """The id of the trial the tuner is training (its open record), for the budget's note."""
    record = getattr(tuner, "_active", None)
    return record.trial_id if record is not None else None


def budget_line(tuner: TrackedTunerMixin, tune: Any, budget: TimeBudget) -> str:
    """``time budget 0:02 (tune.time_budget) spent after 0:03: search stopped with 4 of ~13 trials done ...``."""
    trials = getattr(tuner.oracle, "trials", None)  # a worker's OracleClient has none: its own count
    done = (sum(t.status in ("COMPLETED", "FAILED", "INVALID") for t in trials.values()) if trials is not None
            else tuner.trials_this_process)
    cut = f" ({budget.what_stopped})" if budget.what_stopped else ""
    return (f"{budget.describe()}: search stopped with {done} of ~{expected_trials(tune)} trials done{cut}; "
            "rerun with tune.resume: true to continue it")


class SearchProgress:
    """A ``ProgressPrinter`` line per trial over the whole search: the count and the best come from the
    trial records in the tuner directory, so earlier sessions and other workers' trials are included."""

    def __init__(self, project_dir: Path, expected: int, objective: str, *, stream: Any = None,
                 budget: TimeBudget | None = None) -> None:
        self.project_dir, self.objective = project_dir, objective
        self.printer = ProgressPrinter(expected, direction_of(objective), stream=stream, budget=budget)

    def __call__(self, record: TrialRecord) -> None:
        others = [r for d in sorted(self.project_dir.glob("trial_*"))
                  if (r := TrialRecord.load(d)) is not None and r.trial_id != record.trial_id]
        ended = [r for r in others if r.status in (FINISHED, FAILED)]
        best = best_record(ended, self.objective)
        self.printer.done = len(ended)
        self.printer.best = (best.trial_id, best.score) if best else None
        self.printer(record)
