"""One process of a distributed search: ``python -m pipeline.tuning.worker chief|worker``.

Started by ``pipeline.tuning.distributed`` (never by hand): the chief serves KerasTuner's oracle
over gRPC; a worker asks it for trials, trains them and logs each as a child run of the parent
search run. Everything comes from the environment (see ``distributed.worker_env``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
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
    threads = int(os.environ.get(dist.ENV_THREADS, "0"))
    if threads:  # before TensorFlow runs anything: the workers share the cores
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from pipeline import paths
    from pipeline.data.store import load_split
    from pipeline.objective import direction_of
    from pipeline.tuning.tracker import FAILED, KILLED, NullTracker, TrialTracker
    from pipeline.tuning.tuners import expected_trials, wait_when_idle

    params = _params()
    tune = params.tune
    worker_id = os.environ["KERASTUNER_TUNER_ID"]
    from pipeline.tracking.runs import trial_logger_from_environment

    tracker: TrialTracker = trial_logger_from_environment(tags={"worker": worker_id}) or NullTracker()
    x, y = load_split(paths.PROCESSED_DIR, "train")
    x_val, y_val = load_split(paths.PROCESSED_DIR, "validation")
    tuner = _tuner(params, _hypermodel(params), tracker=tracker)
    wait_when_idle(tuner.oracle)
    tuner.on_trial_done = SharedProgress(Path(tuner.project_dir), expected_trials(tune), tune.objective)
    callbacks = [keras.callbacks.EarlyStopping(monitor=tune.objective, mode=direction_of(tune.objective),
                                               patience=tune.early_stopping_patience)]
    try:
        tuner.search(x, y, validation_data=(x_val, y_val), epochs=tune.max_epochs, callbacks=callbacks,
                     verbose=1 if tune.keras_verbose else 0)
    except KeyboardInterrupt:
        tuner.abort_active_trial(KILLED, "interrupted")
        return 130
    except BaseException as error:
        tuner.abort_active_trial(FAILED, f"{type(error).__name__}: {error}")
        raise
    return 0


class SharedProgress:
    """``ProgressPrinter`` over the whole search: counts and best come from the shared trial records."""

    def __init__(self, project_dir: Path, expected: int, objective: str) -> None:
        from pipeline.objective import direction_of
        from pipeline.tuning.progress import ProgressPrinter

        self.project_dir, self.objective = project_dir, objective
        self.printer = ProgressPrinter(expected, direction_of(objective))

    def __call__(self, record: Any) -> None:
        from pipeline.tuning.records import TrialRecord
        from pipeline.tuning.results import best_record
        from pipeline.tuning.tracker import FAILED, FINISHED

        others = [r for d in sorted(self.project_dir.glob("trial_*"))
                  if (r := TrialRecord.load(d)) is not None and r.trial_id != record.trial_id]
        ended = [r for r in others if r.status in (FINISHED, FAILED)]
        best = best_record(ended, self.objective)
        self.printer.done = len(ended)
        self.printer.best = (best.trial_id, best.score) if best else None
        self.printer(record)


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
