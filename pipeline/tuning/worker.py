"""One process of a distributed search: ``python -m pipeline.tuning.worker chief|worker``.

Started by ``pipeline.tuning.distributed`` (never by hand): the chief serves KerasTuner's oracle
over gRPC; a worker asks it for trials, trains them and logs each as a child run of the parent
search run. Everything comes from the environment (see ``distributed.worker_env``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pipeline.tuning import distributed as dist
from pipeline.tuning.distributed import READY_LINE


def _params() -> Any:
    from pipeline.config import parse_params

    return parse_params(json.loads(os.environ[dist.ENV_PARAMS]))


def _hypermodel(params: Any) -> Any:
    from pipeline import paths
    from pipeline.data.store import load_meta
    from pipeline.tuning.session import hypermodel_for

    return hypermodel_for(params, load_meta(paths.PROCESSED_DIR))


def _tuner(params: Any, hypermodel: Any, **kwargs: Any) -> Any:
    import keras

    from pipeline.tuning.tuners import make_tuner

    keras.utils.set_random_seed(params.seed)
    # The launcher already wiped the project if tune.resume is false; here always reload.
    tune = params.tune.model_copy(update={"resume": True})
    return make_tuner(tune, hypermodel, seed=params.seed, project_name=f"search-{os.environ[dist.ENV_HASH]}",
                      hp_names=list(type(params.search_space).model_fields), **kwargs)


# --------------------------------------------------------------------------- chief
def run_chief() -> int:
    params = _params()
    tuner = _tuner(params, _hypermodel(params))
    tuner.oracle.verbose = 0  # the workers print a line per trial
    tuner.save()
    from pipeline.tuning.tuners import serve_oracle

    serve_oracle(tuner.oracle, os.environ["KERASTUNER_ORACLE_IP"], int(os.environ["KERASTUNER_ORACLE_PORT"]),
                 READY_LINE)
    return 0


# --------------------------------------------------------------------------- worker
def run_worker() -> int:
    """Train the trials the chief hands out until it stops, in the search loop a one-process search uses."""
    threads = int(os.environ.get(dist.ENV_THREADS, "0"))
    if threads:  # before TensorFlow runs anything: the workers share the cores
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from pipeline import paths
    from pipeline.data.store import load_split
    from pipeline.errors import TrackingError
    from pipeline.time_budget import TimeBudget
    from pipeline.tracking.api import tracker_for
    from pipeline.tuning.search import run_trials
    from pipeline.tuning.session import BUDGET_START_ENV
    from pipeline.tuning.tracker import NullTracker, TrialTracker
    from pipeline.tuning.tuners import wait_when_idle

    params = _params()
    # the launcher's search run, described in this process's environment (SearchRun.worker_environment)
    tracker: TrialTracker = tracker_for(params).trial_logger_from_environment(
        tags={"worker": os.environ["KERASTUNER_TUNER_ID"]}) or NullTracker()
    data = (*load_split(paths.PROCESSED_DIR, "train"), *load_split(paths.PROCESSED_DIR, "validation"))
    tuner = _tuner(params, _hypermodel(params), tracker=tracker)
    wait_when_idle(tuner.oracle)
    started = os.environ.get(BUDGET_START_ENV)  # the launcher's clock (a restarted worker keeps it too)
    budget = TimeBudget(params.tune.time_budget, key="tune.time_budget", started=float(started) if started else None)
    try:
        run_trials(tuner, params.tune, data, budget=budget)
    except KeyboardInterrupt:
        return 130
    except TrackingError as error:
        # One line for the launcher to show; its exit code tells the launcher not to restart this
        # worker nor touch the store (its trial is KILLED in its record, retried on resume).
        print(f"error: {error.lines[0]}", file=sys.stderr, flush=True)
        return dist.TRACKING_LOST_EXIT
    return 0


def main(argv: list[str] | None = None) -> int:
    role = (argv if argv is not None else sys.argv[1:])[:1]
    if role == ["chief"]:
        return run_chief()
    if role == ["worker"]:
        return run_worker()
    print("usage: python -m pipeline.tuning.worker chief|worker (started by `python -m pipeline tune`)",
          file=sys.stderr)
    return 2


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    signal.signal(signal.SIGTERM, _interrupt)  # the launcher's terminate(): end the running trial KILLED
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
