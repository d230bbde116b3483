"""Where a trial's fixed time goes: one digits search (the tune stage's code path), timed phase by phase.

The search runs as ``dvc repro tune`` would (params.yaml, data from ``python -m pipeline
preprocess``, MLflow to a SQLite store), in a temp folder, with timers wrapped around the
phases of every trial: the oracle's ``create_trial``, ``on_trial_begin`` (the trial's MLflow run
and record), building (clear_session + gc, build, compile; a continuation's state load),
``fit`` (split into its epochs and what is around them: the data pipeline, callbacks at train
begin/end), inside the epochs the first epoch's extra time (tracing), KerasTuner's
``SaveBestEpoch`` checkpoint and the per-epoch MLflow logging, the pipeline's
``SaveTrainingState``, and ``on_trial_end`` (the oracle, KerasTuner's state files, the MLflow
run's end). Each phase is timed in wall seconds and in process CPU seconds (less sensitive to
other processes' load on a shared machine).

    python bench/trial_phases.py --out /tmp/phases.json                 # this checkout
    python bench/trial_phases.py --code /tmp/old_checkout --out x.json   # another copy's pipeline/

The fixed cost per trial and the setup share from the search's ``trials.csv``
(``pipeline.tuning.fixed_cost``) are printed too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASES: list[dict[str, Any]] = []  # one dict per trial: phase -> [wall, cpu]
CURRENT: dict[str, Any] = {}


def _add(label: str, wall: float, cpu: float) -> None:
    slot = CURRENT.setdefault(label, [0.0, 0.0])
    slot[0] += wall
    slot[1] += cpu


def wrap(owner: Any, name: str, label: str) -> None:
    """Time every call of ``owner.name`` into the current trial's ``label``."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            _add(label, time.perf_counter() - wall, time.process_time() - cpu)

    setattr(owner, name, timed)


def instrument() -> None:
    import keras
    import keras_tuner as kt
    import psutil
    from keras_tuner.src.engine import tuner as kt_tuner
    from keras_tuner.src.engine import tuner_utils

    from pipeline.model import hypermodel, training
    from pipeline.tracking import runs
    from pipeline.tuning import callbacks, tuners

    # The trial's span: from the oracle's create_trial to the next one's (the last: to the search's end).
    original_search = kt.engine.base_tuner.BaseTuner.search

    def search(self: Any, *args: Any, **kwargs: Any) -> Any:
        create = self.oracle.create_trial

        def create_trial(*a: Any, **k: Any) -> Any:
            now = time.perf_counter(), time.process_time()
            if "_start" in CURRENT:
                CURRENT["span"] = [now[0] - CURRENT["_start"][0], now[1] - CURRENT["_start"][1]]
                PHASES.append(dict(CURRENT))
            CURRENT.clear()  # what ran before the first trial (the tuner's set-up) is not a trial's
            CURRENT["_start"] = now
            CURRENT["_rss_mb"] = psutil.Process().memory_info().rss / 2**20
            wall, cpu = time.perf_counter(), time.process_time()
            trial = create(*a, **k)
            _add("oracle.create_trial", time.perf_counter() - wall, time.process_time() - cpu)
            return trial

        self.oracle.create_trial = create_trial
        try:
            return original_search(self, *args, **kwargs)
        finally:
            if CURRENT.get("_start"):
                now = time.perf_counter(), time.process_time()
                CURRENT["span"] = [now[0] - CURRENT["_start"][0], now[1] - CURRENT["_start"][1]]
                if "fit" in CURRENT:
                    PHASES.append(dict(CURRENT))
                CURRENT.clear()

    kt.engine.base_tuner.BaseTuner.search = search
    wrap(tuners.TrackedTunerMixin, "on_trial_begin", "on_trial_begin")
    wrap(tuners.TrackedTunerMixin, "on_trial_end", "on_trial_end")
    wrap(kt_tuner.Tuner, "_try_build", "build.total")
    if "_try_build" in vars(tuners.TrackedTunerMixin):  # the pipeline's own (one collection)
        wrap(tuners.TrackedTunerMixin, "_try_build", "build.total")
    wrap(keras.backend, "clear_session", "build.clear_session")
    wrap(kt_tuner.gc, "collect", "build.gc_collect")
    wrap(hypermodel.CNNHyperModel, "build", "build.build_compile")
    wrap(tuners, "load_training_state", "build.load_state")
    wrap(hypermodel.CNNHyperModel, "fit", "fit.total")
    wrap(tuner_utils.SaveBestEpoch, "on_epoch_end", "epoch.kt_checkpoint")
    wrap(training, "save_training_state", "fit.save_training_state")
    if hasattr(callbacks, "DeferredBestEpoch"):  # the checkpoint written once, at the trial's end
        wrap(callbacks.DeferredBestEpoch, "on_train_end", "fit.kt_checkpoint_write")
    wrap(runs.TrialRunLogger, "start_trial", "mlflow.start_trial")
    wrap(runs.TrialRunLogger, "log_epoch", "epoch.mlflow_log_epoch")
    wrap(runs.TrialRunLogger, "end_trial", "mlflow.end_trial")
    wrap(kt.engine.base_tuner.BaseTuner, "save", "on_trial_end.tuner_save")
    # Per-epoch times (the first epoch's extra is tracing); keyed on every epoch-begin/end.
    begin, end = callbacks.EpochRecorder.on_epoch_begin, callbacks.EpochRecorder.on_epoch_end

    def on_epoch_begin(self: Any, epoch: int, logs: Any = None) -> None:
        CURRENT.setdefault("_epochs", []).append([time.perf_counter(), time.process_time()])
        begin(self, epoch, logs)

    def on_epoch_end(self: Any, epoch: int, logs: Any = None) -> None:
        end(self, epoch, logs)
        mark = CURRENT["_epochs"][-1]
        mark[0], mark[1] = time.perf_counter() - mark[0], time.process_time() - mark[1]

    callbacks.EpochRecorder.on_epoch_begin, callbacks.EpochRecorder.on_epoch_end = on_epoch_begin, on_epoch_end


def summarize(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean seconds per trial of each phase (wall, cpu), with the first epoch's extra and the rest of the trial."""
    steady = [e for t in trials for e in t.get("_epochs", [])[1:]]
    steady_wall = statistics.median(e[0] for e in steady) if steady else 0.0
    steady_cpu = statistics.median(e[1] for e in steady) if steady else 0.0
    labels = sorted({k for t in trials for k in t if not k.startswith("_")})
    out: dict[str, Any] = {"trials": len(trials), "epochs": sum(len(t.get("_epochs", [])) for t in trials),
                           "rss_mb_first_last": [trials[0].get("_rss_mb"), trials[-1].get("_rss_mb")],
                           "steady_epoch": [steady_wall, steady_cpu], "phases": {}}
    for label in labels:
        out["phases"][label] = [statistics.fmean(t.get(label, [0.0, 0.0])[i] for t in trials) for i in (0, 1)]
    firsts = [t["_epochs"][0] for t in trials if t.get("_epochs")]
    out["phases"]["epoch.first_extra"] = [statistics.fmean(f[0] for f in firsts) - steady_wall,
                                          statistics.fmean(f[1] for f in firsts) - steady_cpu]
    out["phases"]["epochs.total"] = [statistics.fmean(sum(e[i] for e in t.get("_epochs", [])) for t in trials)
                                     for i in (0, 1)]
    fixed = [[t["span"][i] - len(t.get("_epochs", [])) * (steady_wall, steady_cpu)[i] for t in trials] for i in (0, 1)]
    out["phases"]["fixed (span - epochs x steady)"] = [statistics.fmean(f) for f in fixed]
    return out


def this_checkouts_fixed_cost() -> Any:
    """``pipeline.tuning.fixed_cost`` of this checkout, whichever ``--code`` is measured (an older one lacks it)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "pipeline" / "tuning" / "fixed_cost.py"
    spec = importlib.util.spec_from_file_location("fixed_cost_here", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="a folder holding the pipeline/ package to measure (default: this checkout)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the per-trial phases")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="params.yaml override, e.g. tune.max_epochs=3 (repeatable)")
    parser.add_argument("--keep", type=Path, default=None, help="copy the search's results/tune here")
    args = parser.parse_args()
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="trial-phases-") as tmp:
        work = Path(tmp)
        shutil.copy2(code / "params.yaml", work / "params.yaml")
        (work / "data" / "raw").mkdir(parents=True)
        env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}
        for stage in ("preprocess",):
            subprocess.run([sys.executable, "-m", "pipeline", stage], cwd=work, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        os.chdir(work)
        sys.path.insert(0, str(code))
        os.environ.update(MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"])
        import logging

        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        from pipeline.config import load_params, parse_override

        params = load_params(Path("params.yaml"), dict(parse_override(o) for o in args.set))
        from pipeline.tuning import session

        instrument()
        start = time.perf_counter()
        session.run_local(params)
        wall = time.perf_counter() - start
        result = {"code": str(code), "wall_seconds": wall, "summary": summarize(PHASES), "trials": PHASES}
        result["trials_csv"] = this_checkouts_fixed_cost().fixed_cost_of(
            Path("results/tune/trials.csv"), json.loads(Path("results/tune/metrics.json").read_text())["wall_seconds"])
        if args.keep:
            shutil.copytree("results/tune", args.keep, dirs_exist_ok=True)
        os.chdir("/")
    args.out.write_text(json.dumps(result, indent=1))
    summary = result["summary"]
    print(f"{summary['trials']} trials, {summary['epochs']} epochs, search {wall:.1f} s; "
          f"RSS at the first / last trial's start {summary['rss_mb_first_last']} MB; "
          f"steady epoch {summary['steady_epoch'][0]:.3f} s wall / {summary['steady_epoch'][1]:.3f} s cpu")
    for label, (w, c) in summary["phases"].items():
        print(f"  {label:34s} {w:7.3f} s wall  {c:7.3f} s cpu")
    print("trials.csv:", json.dumps(result["trials_csv"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
