"""Resident memory across a long search: growth from the first trial to the last (target < 300 MB).

Headline (``--mode pipeline``): the real command line. A temp copy of the project gets a
params.yaml for a long, cheap search (a tiny model space that still changes the architecture
every trial, a 300-image digits subset, RandomSearch with ``--trials`` trials of one epoch,
MLflow tracking into a temp SQLite store, ``tune.trials_per_process`` from params.yaml or
``--trials-per-process``); ``python -m pipeline preprocess`` then ``python -m pipeline tune``
run as subprocesses. The tune process re-executes itself every ``trials_per_process`` trials
(``os.execv``: same pid), so the parent samples that pid's RSS (psutil) every 0.2 s for the
whole command, and takes the RSS of each trial as the last sample before the trial's progress
line (``trial ID: n of ~N ...``) appeared on stdout. Growth = RSS at the last trial minus RSS at
the first; the peak is over all samples.

Diagnosis modes run a search inside one process (a child of this script), recording RSS after
every trial from inside the search:

    python bench/memory.py                            # 120 trials through the command line
    python bench/memory.py --trials 300 --trials-per-process 50
    python bench/memory.py --mode in_process          # tune() called in-process: never restarts
    python bench/memory.py --mode untracked --trials 30
    python bench/memory.py --mode keras_loop --trials 30
    python bench/memory.py --smoke                    # seconds: 3 trials, a restart after 2
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "memory"
TARGET_MB = 300.0
MB = 2**20
SAMPLE_SECONDS = 0.2
SPACE = {
    "architecture": {"choices": ["plain", "vgg", "resnet", "separable"]}, "blocks": {"min": 1, "max": 2},
    "filters": {"choices": [8, 16]}, "kernel_size": 3, "head": {"choices": ["gap", "flatten"]},
    "dense_units": {"choices": [0, 16]}, "init": {"choices": ["glorot_uniform", "he_normal"]},
    "regularizer": {"choices": ["none", "l2"]}, "dropout": {"min": 0.0, "max": 0.5, "step": 0.25},
    "batch_norm": {"choices": [True, False]},
    "optimizer": {"choices": ["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"]},
    "learning_rate": {"min": 1.0e-3, "max": 1.0e-1, "sampling": "log"},
    "lr_schedule": {"choices": ["constant", "step", "exponential", "cosine", "cosine_restarts", "warmup_cosine"]},
    "batch_size": 64,
}
PROGRESS = re.compile(r"^trial (\S+): (\d+) of ~(\d+)")
RESTART = "continuing in a fresh one"

MODES = {
    "pipeline": "`python -m pipeline tune` as a user runs it: restarts every tune.trials_per_process trials "
                "(the figure against the target)",
    "in_process": "pipeline.tuning.session.tune() called in one process with MLflow tracking: never restarts",
    "untracked": "the same in-process search without tracking (NullTracker): is the growth MLflow's?",
    "keras_loop": "no tuner: clear_session + build + fit per trial with random values: is it Keras/TF's?",
}


def keras_loop(hypermodel: Any, space: Any, data: dict, trials: int) -> None:
    import keras
    import keras_tuner

    from pipeline.model.space import declare_hyperparameters

    (x, y), validation = data["train"], data["validation"]
    for trial in range(trials):
        hp = keras_tuner.HyperParameters()
        declare_hyperparameters(space, hp)
        for spec in hp.space:
            hp.values[spec.name] = spec.random_sample(seed=trial * 7919 + 1)
        keras.backend.clear_session()  # what KerasTuner does before building every trial's model
        gc.collect()
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, x, y, validation_data=validation, epochs=1)


def child(trials: int, samples_path: Path, mode: str = "in_process") -> int:
    """An in-process search (``tune()``, no restarts, or a bare Keras loop).

    Writes ``[{trial, rss_mb, seconds}]`` to ``samples_path`` as it goes.
    """
    import psutil

    common.quiet_tensorflow()
    from pipeline.config import parse_params
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.tracking.store import configure
    from pipeline.tuning.session import tune

    process = psutil.Process()
    samples: list[dict[str, Any]] = [{"trial": -1, "rss_mb": process.memory_info().rss / MB, "seconds": 0.0}]
    start = time.perf_counter()

    class MeasuredHyperModel(CNNHyperModel):
        def fit(self, *args: Any, **kwargs: Any) -> Any:
            history = super().fit(*args, **kwargs)
            samples.append({"trial": len(samples) - 1, "rss_mb": process.memory_info().rss / MB,
                            "seconds": time.perf_counter() - start})
            samples_path.write_text(json.dumps(samples))
            return history

    data = common.digits_splits(seed=0, max_samples=300)
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
        params = parse_params({"seed": 0, "search_space": SPACE, "mlflow": {"experiment": "bench-memory"},
                               "tune": {"tuner": "random", "max_trials": trials, "max_epochs": 1,
                                        "max_consecutive_failed_trials": trials,
                                        "directory": str(workdir / ".tuner"), "resume": False}})
        uri = configure(params)
        x, y = data["train"]
        hypermodel = MeasuredHyperModel(space=params.search_space, input_shape=x.shape[1:], num_classes=10,
                                        seed=0, total_epochs=1)
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # one progress line per trial: not wanted here
            if mode == "keras_loop":
                keras_loop(hypermodel, params.search_space, data, trials)
            else:
                tune(params, hypermodel, (x, y, *data["validation"]), "bench-memory",
                     tracking_uri=uri if mode == "in_process" else None,
                     hp_names=list(type(params.search_space).model_fields), out_dir=workdir / "out")
        os.chdir(common.REPO)
    return 0


def sample_rss(proc: subprocess.Popen, start: float) -> list[tuple[float, float]]:
    """(seconds since ``start``, RSS in MB) of ``proc`` every SAMPLE_SECONDS until it exits."""
    import psutil

    watched = psutil.Process(proc.pid)
    timeline: list[tuple[float, float]] = []
    while proc.poll() is None:
        try:
            timeline.append((time.perf_counter() - start, watched.memory_info().rss / MB))
        except psutil.Error:
            pass
        time.sleep(SAMPLE_SECONDS)
    return timeline


def slope_mb_per_trial(samples: list[dict[str, Any]]) -> float | None:
    """Least-squares slope of RSS over trials, leaving out the first tenth (warm-up allocations)."""
    points = [(s["trial"], s["rss_mb"]) for s in samples if s["trial"] >= 0]
    points = points[len(points) // 10:]
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


def copy_project(dest: Path) -> Path:
    """The project's code and configuration without generated state (as tests/conftest.py copy_project)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(common.REPO / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"):
        if (common.REPO / name).exists():
            shutil.copy2(common.REPO / name, dest / name)
    return dest


def write_project_params(project: Path, trials: int, trials_per_process: int | None) -> dict[str, Any]:
    """params.yaml of the copy: the repo's, with the benchmark's seed, data subset, space and search."""
    import yaml

    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["seed"] = 0
    raw["data"] = {**raw.get("data", {}), "source": "digits", "max_samples": 300}
    raw["search_space"] = SPACE  # replaced, not merged: the keys left out take the config defaults
    tune = {**raw.get("tune", {}), "tuner": "random", "max_trials": trials, "max_epochs": 1,
            "max_consecutive_failed_trials": trials, "resume": True, "workers": 1, "directory": ".tuner"}
    if trials_per_process is not None:
        tune["trials_per_process"] = trials_per_process
    raw["tune"] = tune
    raw["mlflow"] = {**raw.get("mlflow", {}), "experiment": "bench-memory", "tracking_uri": None}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return tune


def run_cli_search(trials: int, trials_per_process: int | None) -> dict[str, Any]:
    """preprocess + tune through ``python -m pipeline`` in a temp project; RSS of the tune pid sampled."""

    with tempfile.TemporaryDirectory(prefix="bench-memory-cli-") as tmp:
        project = copy_project(Path(tmp) / "project")
        tune_params = write_project_params(project, trials, trials_per_process)
        env = {**os.environ, "PYTHONPATH": str(project), "PYTHONUNBUFFERED": "1",
               "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
        pre = subprocess.run([sys.executable, "-m", "pipeline", "preprocess"], cwd=project, env=env, text=True,
                             capture_output=True, timeout=600)
        if pre.returncode != 0:
            raise SystemExit(f"memory: preprocess failed ({pre.returncode}):\n{pre.stdout[-3000:]}{pre.stderr[-3000:]}")
        lines: list[tuple[float, str]] = []
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((time.perf_counter() - start, line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        timeline = sample_rss(proc, start)  # the tune pid's RSS, across its re-execs
        reader.join(timeout=30)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print("\n".join(line for _, line in lines[-60:]), file=sys.stderr)
            raise SystemExit(f"memory: `python -m pipeline tune` failed with exit code {proc.returncode}")
        metrics = json.loads((project / "results" / "tune" / "metrics.json").read_text())
    return {"lines": lines, "timeline": timeline, "wall": wall, "tune": tune_params, "metrics": metrics}


def per_trial_samples(lines: list[tuple[float, str]], timeline: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """One sample per progress line: the last RSS sample taken before the line appeared (the trial's end).

    The last sample *before* the line, not the nearest: the line of a process's last trial is followed
    within milliseconds by the re-exec, whose fresh interpreter is much smaller.
    """
    samples, process = [], 1
    for seconds, line in lines:
        if RESTART in line:
            process += 1
            continue
        match = PROGRESS.match(line)
        if not match:
            continue
        before = [s for s in timeline if s[0] <= seconds]
        at = before[-1] if before else min(timeline, key=lambda s: abs(s[0] - seconds))
        samples.append({"trial": int(match.group(2)), "trial_id": match.group(1), "process": process,
                        "rss_mb": round(at[1], 1), "seconds": round(seconds, 2),
                        "sample_lag_s": round(seconds - at[0], 2)})
    return samples


def by_process(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for process in sorted({s["process"] for s in samples}):
        mine = [s for s in samples if s["process"] == process]
        rows.append({"process": process, "trials": len(mine), "first_trial": mine[0]["trial"],
                     "last_trial": mine[-1]["trial"], "rss_first_trial_mb": mine[0]["rss_mb"],
                     "rss_last_trial_mb": mine[-1]["rss_mb"],
                     "growth_mb": round(mine[-1]["rss_mb"] - mine[0]["rss_mb"], 1),
                     "slope_mb_per_trial": slope_mb_per_trial([{**s, "trial": i} for i, s in enumerate(mine)])})
    return rows


def run_in_process(mode: str, trials: int) -> dict[str, Any]:
    """A diagnosis mode in a child process of this script; the parent samples the child's RSS for the peak."""

    with tempfile.TemporaryDirectory(prefix="bench-memory-parent-") as tmp:
        samples_path = Path(tmp) / "samples.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--trials", str(trials), "--mode", mode,
               "--child", str(samples_path)]
        log_path = Path(tmp) / "child.log"
        start = time.perf_counter()
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
            timeline = sample_rss(proc, start)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise SystemExit(f"memory: the search child failed with exit code {proc.returncode}")
        samples = json.loads(samples_path.read_text())
    return {"samples": samples, "timeline": timeline, "wall": wall}


def thin(timeline: list[tuple[float, float]], every: float = 1.0) -> list[list[float]]:
    """The RSS timeline at about one point per ``every`` seconds (the peak is taken from all samples)."""
    out: list[list[float]] = []
    for seconds, rss in timeline:
        if not out or seconds - out[-1][0] >= every:
            out.append([round(seconds, 1), round(rss, 1)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--trials", type=int, default=None, help="trials in the search (default 120; smoke 3)")
    parser.add_argument("--trials-per-process", type=int, default=None,
                        help="pipeline mode: tune.trials_per_process (default: params.yaml's; smoke 2)")
    parser.add_argument("--mode", choices=list(MODES), default="pipeline",
                        help="; ".join(f"{k}: {v}" for k, v in MODES.items()))
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run the search
    args = parser.parse_args()
    trials = args.trials or (3 if args.smoke else 120)
    if args.child is not None:
        return child(trials, args.child, args.mode)
    name = NAME if args.mode == "pipeline" else f"{NAME}_{args.mode}"
    per_process = args.trials_per_process
    if per_process is None and args.smoke:
        per_process = 2  # the smoke run goes through one restart

    env = common.environment()
    if args.mode == "pipeline":
        run = run_cli_search(trials, per_process)
        trial_samples = per_trial_samples(run["lines"], run["timeline"])
        if not trial_samples:
            raise SystemExit("memory: no per-trial progress line found in the tune output")
        processes = by_process(trial_samples)
        extra: dict[str, Any] = {
            "trials_per_process": run["tune"].get("trials_per_process"),
            "restarts": sum(RESTART in line for _, line in run["lines"]),
            "processes": processes,
            "max_growth_within_a_process_mb": max(p["growth_mb"] for p in processes),
            "search_metrics": {k: run["metrics"].get(k) for k in ("trials", "completed", "failed")},
            "rss_before_search_mb": None,  # the tune process starts from an empty interpreter: nothing to compare
        }
        samples: list[dict[str, Any]] = trial_samples
    else:
        run = run_in_process(args.mode, trials)
        samples = run["samples"]
        trial_samples = [s for s in samples if s["trial"] >= 0]
        extra = {"rss_before_search_mb": samples[0]["rss_mb"]}
    wall, timeline = run["wall"], run["timeline"]
    peak = max((rss for _, rss in timeline), default=0.0)
    first, last = trial_samples[0]["rss_mb"], trial_samples[-1]["rss_mb"]
    growth = last - first
    if args.mode == "pipeline":  # within a process (a re-exec drops the RSS): the mean of the processes' slopes
        slopes = [p["slope_mb_per_trial"] for p in extra["processes"] if p["slope_mb_per_trial"] is not None]
        slope = statistics.fmean(slopes) if slopes else None
    else:
        slope = slope_mb_per_trial(samples)
    result = {
        "mode": args.mode, "mode_description": MODES[args.mode],
        "trials": len(trial_samples), "requested_trials": trials, "wall_seconds": wall,
        "rss_first_trial_mb": first, "rss_last_trial_mb": last,
        # the old key names, kept for comparisons with earlier results
        "rss_after_first_trial_mb": first, "rss_after_last_trial_mb": last,
        "growth_mb": growth, "peak_rss_mb": peak, "peak_minus_first_trial_mb": peak - first,
        "slope_mb_per_trial": slope, "target_growth_mb": TARGET_MB, "met": growth < TARGET_MB,
        **extra, "samples": samples, "rss_timeline": thin(timeline),
    }
    verdict = "met" if growth < TARGET_MB else "MISSED"
    n = len(trial_samples)
    if args.mode == "pipeline":
        rows = [[f"process {p['process']}", f"{p['first_trial']}..{p['last_trial']}",
                 f"{p['rss_first_trial_mb']:.0f} MB", f"{p['rss_last_trial_mb']:.0f} MB", f"{p['growth_mb']:.0f} MB",
                 f"{p['slope_mb_per_trial']:.2f} MB/trial" if p["slope_mb_per_trial"] is not None else "n/a"]
                for p in extra["processes"]]
        rows.append(["**whole search**", f"1..{trial_samples[-1]['trial']}", f"{first:.0f} MB", f"{last:.0f} MB",
                     f"**{growth:.0f} MB**", f"peak {peak:.0f} MB"])
        body = (f"### Memory over a {n}-trial search from the command line: growth **{growth:.0f} MB** from "
                f"the first trial to the last, peak **{peak:.0f} MB** (target < {TARGET_MB:.0f} MB: {verdict})\n\n"
                + common.markdown_table(["tune process (same pid, re-executed)", "trials",
                                         "RSS at first trial", "at last trial", "growth", "slope (after first 10%)"],
                                        rows)
                + f"\n\n`python -m pipeline preprocess` then `python -m pipeline tune` in a temp copy of the "
                  f"project: RandomSearch, {n} trials of 1 epoch, tune.trials_per_process "
                  f"{extra['trials_per_process']} ({extra['restarts']} re-execs), MLflow tracking to SQLite, "
                  "4 architectures x depth/width/head/optimizer/schedule choices, a 300-image digits subset. "
                  f"RSS of the tune pid sampled every {SAMPLE_SECONDS} s ({wall:.0f} s in all); a trial's RSS is "
                  "the last sample before its progress line.")
    else:
        body = None  # diagnosis modes: JSON only; BENCHMARKS.md quotes them in the notes
    common.write_result(name, args, env, result, body)
    print(f"memory ({args.mode}): {n} trials, growth {growth:.0f} MB, peak {peak:.0f} MB"
          + (f", {extra['restarts']} restarts, max growth within a process "
             f"{extra['max_growth_within_a_process_mb']:.0f} MB" if args.mode == "pipeline" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
