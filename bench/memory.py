"""Resident memory across a long search: growth from the first trial to the last (target < 300 MB).

The search runs in a child process (so the measurement holds nothing but the search): the
pipeline's own ``tune`` (RandomSearch, MLflow tracking into a temp SQLite store, outputs
written), a tiny model space that still changes the architecture every trial, a digits
subset and one epoch per trial. The child records its RSS (psutil) after every trial; the
parent samples the child's RSS every 0.2 s for the peak.

    python bench/memory.py                  # 120 trials
    python bench/memory.py --trials 300
    python bench/memory.py --smoke          # seconds: 3 trials
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "memory"
TARGET_MB = 300.0
MB = 2**20
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


MODES = {
    "pipeline": "the tune stage's search with MLflow tracking (the figure against the target)",
    "untracked": "the same search without tracking (NullTracker): is the growth MLflow's?",
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


def child(trials: int, samples_path: Path, mode: str = "pipeline") -> int:
    """The search itself; writes ``[{trial, rss_mb, seconds}]`` to ``samples_path`` as it goes."""
    import psutil

    common.quiet_tensorflow()
    from pipeline.config import parse_params
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.stages.tune import tune
    from pipeline.tracking.store import configure

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
                     tracking_uri=uri if mode == "pipeline" else None,
                     hp_names=list(type(params.search_space).model_fields), out_dir=workdir / "out")
        os.chdir(common.REPO)
    return 0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--trials", type=int, default=None, help="trials in the search (default 120; smoke 3)")
    parser.add_argument("--mode", choices=sorted(MODES), default="pipeline",
                        help="; ".join(f"{k}: {v}" for k, v in MODES.items()))
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)  # internal: run the search
    args = parser.parse_args()
    trials = args.trials or (3 if args.smoke else 120)
    if args.child is not None:
        return child(trials, args.child, args.mode)
    name = NAME if args.mode == "pipeline" else f"{NAME}_{args.mode}"

    import psutil

    env = common.environment()
    with tempfile.TemporaryDirectory(prefix="bench-memory-parent-") as tmp:
        samples_path = Path(tmp) / "samples.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--trials", str(trials), "--mode", args.mode,
               "--child", str(samples_path)]
        log_path = Path(tmp) / "child.log"
        start = time.perf_counter()
        with log_path.open("w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
            peak = 0.0
            watched = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    peak = max(peak, watched.memory_info().rss / MB)
                except psutil.Error:
                    pass
                time.sleep(0.2)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(log_path.read_text()[-4000:], file=sys.stderr)
            raise SystemExit(f"memory: the search child failed with exit code {proc.returncode}")
        samples = json.loads(samples_path.read_text())
    trial_samples = [s for s in samples if s["trial"] >= 0]
    first, last = trial_samples[0]["rss_mb"], trial_samples[-1]["rss_mb"]
    growth = last - first
    slope = slope_mb_per_trial(samples)
    result = {
        "mode": args.mode, "mode_description": MODES[args.mode],
        "trials": len(trial_samples), "requested_trials": trials, "wall_seconds": wall,
        "rss_before_search_mb": samples[0]["rss_mb"], "rss_after_first_trial_mb": first,
        "rss_after_last_trial_mb": last, "growth_mb": growth, "peak_rss_mb": peak,
        "slope_mb_per_trial": slope, "target_growth_mb": TARGET_MB, "met": growth < TARGET_MB,
        "samples": samples,
    }
    body = (f"### Memory over a {len(trial_samples)}-trial search: growth **{growth:.0f} MB** from the first "
            f"trial to the last (target < {TARGET_MB:.0f} MB: {'met' if growth < TARGET_MB else 'MISSED'})\n\n"
            + common.markdown_table(
                ["RSS before search", "after trial 1", f"after trial {len(trial_samples)}", "growth", "peak",
                 "slope (after first 10%)", "wall"],
                [[f"{samples[0]['rss_mb']:.0f} MB", f"{first:.0f} MB", f"{last:.0f} MB", f"{growth:.0f} MB",
                  f"{peak:.0f} MB", f"{slope:.2f} MB/trial" if slope is not None else "n/a", f"{wall:.0f} s"]])
            + "\n\nThe pipeline's `tune` (RandomSearch, MLflow tracking to SQLite, 1 epoch per trial, 4 "
              "architectures x depth/width/head/optimizer/schedule choices) on a 300-image digits subset, in a child "
              "process.")
    common.write_result(name, args, env, result, body if args.mode == "pipeline" else None)
    print(f"memory: {len(trial_samples)} trials, growth {growth:.0f} MB, peak {peak:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
