"""One search session: open (or resume) the search run, build the tuner, run it, write the outputs.

Used by the ``tune`` stage in one process and by the distributed chief (``write_outputs``
after its workers finish). Outputs (dvc.yaml): best_hparams.json, trials.csv, history.csv,
summary.png, metrics.json.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import paths
from pipeline.errors import PipelineError, TrackingError

if TYPE_CHECKING:
    from pipeline.tracking.api import Tracker

# How many distinct configurations best_hparams.json lists for train (train.configurations takes
# the first ones): a constant, so that tune does not depend on the train section of params.yaml.
TOP_CONFIGURATIONS = 5

# Set for the fresh process that continues a search: the parent run it must end if it cannot start.
CONTINUED_RUN_ENV = "PIPELINE_CONTINUED_SEARCH_RUN"
# ... and when this invocation's tune.time_budget started (time.time()): a fresh process spends the same budget.
BUDGET_START_ENV = "PIPELINE_SEARCH_BUDGET_START"


def run_local(params: Any, *, trials_per_process: int = 0) -> Any:
    """The search in this process on ``data/processed``; None when it ended, or the ``ProcessRecycle``
    asking for a fresh process to continue it (``trials_per_process``; its search run left open)."""
    from pipeline.data.store import load_meta, load_split
    from pipeline.time_budget import TimeBudget
    from pipeline.tracking.api import open_tracker

    started = os.environ.pop(BUDGET_START_ENV, None)  # the budget counts from the command's start
    budget = TimeBudget(params.tune.time_budget, key="tune.time_budget", started=float(started) if started else None)
    budget.continues = started is not None  # a process recycled mid-search, not a new invocation
    tracker = open_tracker(params)  # fails in seconds if the tracking server is down (before Keras loads)
    from pipeline.tuning.tuners import ProcessRecycle  # Keras: tens of seconds of imports on a busy machine
    continued_run = os.environ.pop(CONTINUED_RUN_ENV, None)
    try:
        meta = load_meta(paths.PROCESSED_DIR)
        data = (*load_split(paths.PROCESSED_DIR, "train"), *load_split(paths.PROCESSED_DIR, "validation"))
    except PipelineError as error:
        if continued_run:  # the previous process left the run open for this one
            tracker.end_run(continued_run, "FAILED", "; ".join(error.lines))
        raise
    try:
        with sigterm_as_interrupt():
            tune(params, hypermodel_for(params, meta), data, meta["fingerprint"], tracking=tracker,
                 hp_names=list(type(params.search_space).model_fields), out_dir=paths.TUNE_DIR,
                 trials_per_process=trials_per_process, budget=budget)
    except ProcessRecycle as recycle:
        os.environ[BUDGET_START_ENV] = repr(budget.started)  # inherited by the process that continues
        return recycle
    return None


def hypermodel_for(params: Any, meta: dict[str, Any]) -> Any:
    """The search's hypermodel: every trial anneals over ``tune.max_epochs`` whatever its round."""
    from pipeline.model.hypermodel import hypermodel_from_meta

    return hypermodel_from_meta(params.search_space, meta, seed=params.seed, total_epochs=params.tune.max_epochs,
                                fidelity=params.tune.fidelity, precision=params.precision)


def tune(params: Any, hypermodel: Any, data: tuple[Any, Any, Any, Any], fingerprint: str, *,
         tracking: Tracker | None = None, hp_names: list[str] | None, out_dir: Path = paths.TUNE_DIR,
         trials_per_process: int = 0, budget: Any = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """Run or resume the search, log it to ``tracking`` (None: no tracking), write the outputs.

    ``tracking_uri``: instead of ``tracking``, the location of a store already connected with these
    ``params`` (what tests and benchmarks hold); the params' backend interprets it.

    ``budget``: a ``pipeline.time_budget.TimeBudget`` (default: ``tune.time_budget`` from the search's start).

    With ``trials_per_process`` > 0 it raises ``ProcessRecycle`` after that many trials (the
    search run stays open); the caller starts a new process, which resumes the search.
    """
    import keras

    from pipeline.atomic import require_writable_folder
    from pipeline.tuning.identity import search_hash
    from pipeline.tuning.records import collect_records, ended_run_statuses
    from pipeline.tuning.search import run_search
    from pipeline.tuning.tracker import NullTracker, TrialTracker
    from pipeline.tuning.tuners import ProcessRecycle, make_tuner

    keras.utils.set_random_seed(params.seed)
    digest = search_hash(params, fingerprint)
    require_writable_folder(out_dir)  # now, not after the whole search
    search_run = None
    tracker: TrialTracker = NullTracker()
    if tracking is None and tracking_uri is not None:
        from pipeline.tracking.api import tracker_for

        tracking = tracker_for(params, tracking_uri)
    if tracking is not None:
        search_run = open_search_run(params, tracking, digest, fingerprint, data[0], data[1])
        tracker = search_run.trial_logger()
    try:
        # Inside the try: a tuner state that cannot be reloaded (a torn file) closes the search run too.
        tuner = make_tuner(params.tune, hypermodel, seed=params.seed, project_name=f"search-{digest}",
                           tracker=tracker, hp_names=hp_names)
        tuner.trials_per_process = trials_per_process
        if search_run is not None and search_run.resumed:
            tracker.close_leftover_runs(ended_run_statuses(collect_records(tuner)))
        # Seed again right before the search: opening MLflow runs must not change which trials run.
        keras.utils.set_random_seed(params.seed)
        result = run_search(tuner, params.tune, data, budget=budget)
    except ProcessRecycle as recycle:
        recycle.search_run_id = search_run.ref.id if search_run is not None else None
        raise  # the search goes on in a new process; its run stays open
    except TrackingError:
        raise  # the store is down (the loop waited for it): the resumed search closes the run
    except KeyboardInterrupt:
        close_search_run(search_run, "KILLED", "interrupted; rerun to resume")
        raise
    except RuntimeError as error:  # KerasTuner: too many consecutive failed trials
        close_search_run(search_run, "FAILED", str(error))
        raise PipelineError(f"the search stopped: {str(error).strip().splitlines()[0]}") from None
    except BaseException as error:
        close_search_run(search_run, "FAILED", f"{type(error).__name__}: {error}")
        raise

    return write_outputs(params, result.records, result.wall_seconds, search_run, fingerprint=fingerprint,
                         digest=digest, hp_names=hp_names, out_dir=out_dir, project_dir=result.project_dir,
                         budget=result.budget)


def open_search_run(params: Any, tracking: Tracker, digest: str, fingerprint: str, x: Any, y: Any) -> Any:
    """Create or (resume) find the parent run of the search (``Tracker.open_search``)."""
    from pipeline.model.precision import resolve_precision
    from pipeline.tuning.identity import flatten, search_definition

    definition = search_definition(params, fingerprint)
    run_params = {**flatten("tune", definition["tune"]), **flatten("search_space", definition["search_space"]),
                  "seed": str(params.seed), "precision": params.precision,
                  "precision_policy": resolve_precision(params.precision)}
    return tracking.open_search(
        digest, tuner=params.tune.tuner, resume=params.tune.resume, params=run_params,
        tags={"data_fingerprint": fingerprint},
        dataset=(x, y, fingerprint, str(Path(paths.PROCESSED_DIR).resolve())),
    )


def write_outputs(params: Any, records: list[Any], wall_seconds: float, search_run: Any, *, fingerprint: str,
                  digest: str, hp_names: list[str] | None, out_dir: Path = paths.TUNE_DIR,
                  project_dir: Path | None = None, budget: Any = None) -> dict[str, Any]:
    """The DVC outputs and the parent run's summary from the trial records (one process or many);
    ``budget`` (a ``TimeBudget``): ``time_budget_s``, ``time_spent_s`` and ``stopped_by_budget`` on the run."""
    from pipeline.tuning.fixed_cost import fixed_cost_metrics
    from pipeline.tuning.gain import search_gain
    from pipeline.tuning.results import (
        DVC_METRIC_KEYS,
        best_hparams,
        best_initial_point,
        best_record,
        candidate,
        search_metrics,
        top_configurations,
        trial_rows,
        write_history_csv,
        write_json,
        write_summary_plot,
        write_trials_csv,
    )

    best_trial = best_record(records, params.tune.objective)
    objective = params.tune.objective
    names = hp_names or sorted({k for r in records for k in r.values})
    out_dir = Path(out_dir)
    trials_file, history_file = out_dir / paths.TRIALS_FILE.name, out_dir / paths.TUNE_HISTORY_FILE.name
    plot_file = out_dir / paths.SUMMARY_PLOT.name
    write_trials_csv(trials_file, trial_rows(records, objective, names), names)
    write_history_csv(history_file, records)
    write_summary_plot(plot_file, records, objective)
    metrics = search_metrics(records, objective, wall_seconds)
    gain = search_gain(records, objective, params.tune.max_epochs)  # what the search bought over the initial points
    cost = fixed_cost_metrics(records, metrics["wall_seconds"])  # setup vs epochs: what a trial costs beyond training
    # a budget's figures where one was set: whether it, not the search's end, stopped the search
    spent = budget.metrics() if budget is not None and budget.limited else {}
    write_json(out_dir / paths.TUNE_METRICS_FILE.name,
               {**{key: metrics[key] for key in DVC_METRIC_KEYS}, **gain.metrics(), **cost, **spent})
    if best_trial is None:
        if search_run is not None:
            search_run.abort("FAILED", "no trial finished")
        raise PipelineError(f"no trial finished ({metrics['failed']} failed); see {trials_file} for the errors")
    project_dir = Path(project_dir or Path(params.tune.directory) / f"search-{digest}")
    top = [candidate(r, objective, project_dir / f"trial_{r.trial_id}")
           for r in top_configurations(records, objective, TOP_CONFIGURATIONS)]
    initial = best_initial_point(records, objective)
    best = best_hparams(best_trial, objective, top=top, tuner=params.tune.tuner,
                        initial_point=candidate(initial, objective, project_dir / f"trial_{initial.trial_id}")
                        if initial is not None else None,
                        search_run_id=search_run.ref.id if search_run else None,
                        data_fingerprint=fingerprint, search_hash=digest)
    write_json(out_dir / paths.BEST_HPARAMS_FILE.name, best)
    if search_run is not None:
        search_run.finish(
            metrics={"best_objective": metrics["best_objective"], "trials": metrics["trials"],
                     "completed": metrics["completed"], "failed": metrics["failed"],
                     "wall_seconds": metrics["wall_seconds"], **gain.run_metrics(), **cost,
                     **(budget.metrics() if budget is not None else {})},
            tags={"best_trial_id": best_trial.trial_id, "best_epochs": best["epochs"], **gain.run_tags(),
                  **{f"best.{k}": v for k, v in best_trial.values.items()}},
            artifacts=[trials_file, history_file, plot_file, out_dir / paths.BEST_HPARAMS_FILE.name],
        )
    print(f"best trial {best_trial.trial_id}: {objective} {best_trial.score:.4f} "
          f"({metrics['completed']} finished, {metrics['failed']} failed, {metrics['wall_seconds']:.0f} s)")
    print(gain.sentence())
    return best


def close_search_run(search_run: Any, status: str, reason: str) -> None:
    """End the parent run after a fault; if the store itself is what failed, the rerun closes it."""
    if search_run is None:
        return
    try:
        search_run.abort(status, reason)
    except TrackingError:
        pass  # the fault being reported is the store's own: its message says to rerun


@contextmanager
def sigterm_as_interrupt():
    """`kill` (SIGTERM) ends the search like Ctrl-C: the running trial's run is marked KILLED."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
