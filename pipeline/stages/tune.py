"""The ``tune`` stage: a KerasTuner search over ``search_space``, every trial a nested MLflow run.

Outputs (dvc.yaml): best_hparams.json, trials.csv, history.csv, summary.png, metrics.json;
the tuner's state stays under ``tune.directory`` (persist: true) so a rerun resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError


def run(params: Any, args: argparse.Namespace) -> int:
    workers = getattr(args, "workers", None) or params.tune.workers
    if workers < 1:
        raise ConfigError(f"--workers {workers}: allowed: 1 or more")
    from pipeline.tuning.distributed import role_from_env
    from pipeline.tuning.lock import search_lock
    from pipeline.tuning.session import CONTINUED_RUN_ENV, run_local, sigterm_as_interrupt

    role = role_from_env()
    # A worker host joins the chief's search: the chief holds the lock.
    with nullcontext() if role == "worker" else search_lock(Path(params.tune.directory)):
        if workers > 1 or role is not None:  # KerasTuner's distributed mode: chief + workers
            from pipeline.tuning.distributed import run_distributed

            with sigterm_as_interrupt():
                return run_distributed(params, workers, role)
        # Only a real command line can be restarted; called in-process (tests, notebooks) it never is.
        restart_argv = getattr(args, "restart_argv", None)
        recycled = run_local(params, trials_per_process=params.tune.trials_per_process if restart_argv else 0)
    if recycled is not None:
        print(f"{recycled.trials} trials in this process: continuing in a fresh one to release the memory "
              "TensorFlow keeps per model (tune.trials_per_process)", flush=True)
        sys.stderr.flush()
        if recycled.search_run_id:
            os.environ[CONTINUED_RUN_ENV] = recycled.search_run_id
        # The new process must continue this search, even when params say tune.resume: false.
        os.execv(sys.executable, [*restart_argv, "-S", "tune.resume=true"])
    return 0
