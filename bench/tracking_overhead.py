"""What MLflow tracking costs the tune stage: the same search with and without it.

Runs the identical search (same seed, data and space) alternately with tracking (a fresh SQLite
store per repeat, created before the clock starts, as a user's store already exists) and
without (``NullTracker``), and reports the median wall-time ratio. Budget: <= 1.05.

    python bench/tracking_overhead.py              # digits, default space, Hyperband max_epochs=3, 5 pairs
    python bench/tracking_overhead.py --repeats 9
    python bench/tracking_overhead.py --smoke      # seconds: tiny space, 1 random trial of 1 epoch, 1 pair

Flags and output follow ``bench/common.py`` (``--out``/``--output``; smoke JSON goes to a temp folder).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

REPO = common.REPO
NAME = "tracking_overhead"
BUDGET_RATIO = 1.05


def load_data(n: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target.astype(np.int32)
    order = np.random.default_rng(0).permutation(len(x))[: n or len(x)]
    x, y = x[order], y[order]
    x = (x - x.mean()) / x.std()
    cut = int(len(x) * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def make_params(workdir: Path, smoke: bool) -> object:
    from pipeline.config import parse_params

    if smoke:
        tune = {"tuner": "random", "max_trials": 1, "max_epochs": 1}
        space = {"architecture": "plain", "blocks": 1, "filters": 8, "head": "gap", "dense_units": 0,
                 "batch_size": 64, "lr_schedule": "constant"}
    else:
        tune = {"tuner": "hyperband", "max_epochs": 3, "factor": 3}
        space = {}
    tune["directory"] = str(workdir / ".tuner")
    return parse_params({"seed": 3, "search_space": space, "tune": tune, "mlflow": {"experiment": "bench"}})


WORK_KEYS = ("trial_id", "status", "bracket", "round", "continued_from", "initial_epoch", "target_epochs",
             "epochs_trained")


def trials_run(trials_csv: Path) -> list[dict[str, str]]:
    """What the search did, trial by trial: id, status, Hyperband bracket/round, epochs, hyperparameters, score."""
    with trials_csv.open(newline="") as f:
        return [{k: v for k, v in row.items() if k in WORK_KEYS or k.startswith("hp.") or k == "score"}
                for row in csv.DictReader(f)]


def work_of(trials: list[dict[str, str]]) -> list[dict[str, str]]:
    """The trials without their scores: the work done (which configurations, how many epochs each)."""
    return [{k: v for k, v in t.items() if k != "score"} for t in trials]


def one_search(tracked: bool, smoke: bool, data: tuple, repeat: int) -> tuple[float, list[dict[str, str]]]:
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.tracking.store import configure
    from pipeline.tuning.session import tune

    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        params = make_params(workdir, smoke)
        uri = None
        if tracked:
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
            uri = configure(params)  # store creation is one-time setup, outside the clock
        model = CNNHyperModel(space=params.search_space, input_shape=(8, 8, 1), num_classes=10,
                              seed=params.seed, total_epochs=params.tune.max_epochs)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the per-trial progress lines
            tune(params, model, data, f"bench-{repeat}", tracking_uri=uri,
                 hp_names=list(type(params.search_space).model_fields), out_dir=workdir / "out")
        seconds = time.perf_counter() - start
        trials = trials_run(workdir / "out" / "trials.csv")
        os.chdir(REPO)
    return seconds, trials


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=None, help="pairs of runs (default 5, smoke 1)")
    args = parser.parse_args()
    env = common.environment()
    common.quiet_tensorflow()
    repeats = args.repeats or (1 if args.smoke else 5)
    data = load_data(300 if args.smoke else None)
    if not args.smoke:
        for tracked in (True, False):  # warm-up: imports, TensorFlow start-up, first graph traces
            one_search(tracked, args.smoke, data, -1)
    times: dict[str, list[float]] = {"tracked": [], "untracked": []}
    trials: dict[str, list[list[dict[str, str]]]] = {"tracked": [], "untracked": []}
    for repeat in range(repeats):
        # alternate which goes first so drift in machine load hits both equally
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for tracked in order:
            seconds, ran = one_search(tracked, args.smoke, data, repeat)
            side = "tracked" if tracked else "untracked"
            times[side].append(seconds)
            trials[side].append(ran)
            print(f"repeat {repeat}: {'with' if tracked else 'without'} tracking {seconds:.2f} s, {len(ran)} trials, "
                  f"{sum(int(t['epochs_trained'] or 0) for t in ran)} epochs", flush=True)
    ratios = [t / u for t, u in zip(times["tracked"], times["untracked"], strict=True)]
    pairs = list(zip(trials["tracked"], trials["untracked"], strict=True))
    same_work = [work_of(t) == work_of(u) for t, u in pairs]
    same_scores = [[r["score"] for r in t] == [r["score"] for r in u] for t, u in pairs]
    all_runs = trials["tracked"] + trials["untracked"]
    identical = {
        # per pair: the same trials (ids, hyperparameters, brackets, epochs trained) on both sides
        "work_per_pair": same_work, "all_pairs": all(same_work),
        # and every run, both sides, all repeats: the same search (the seed fixes it)
        "all_runs": all(work_of(r) == work_of(all_runs[0]) for r in all_runs),
        "scores_per_pair": same_scores,
        "epochs_per_run": {side: [sum(int(t["epochs_trained"] or 0) for t in runs) for runs in trials[side]]
                           for side in trials},
        "trials_per_run": {side: [len(runs) for runs in trials[side]] for side in trials},
    }
    median_ratio = statistics.median(ratios)
    result = {
        "repeats": repeats, "seconds": times,
        "median_tracked_s": statistics.median(times["tracked"]),
        "median_untracked_s": statistics.median(times["untracked"]),
        "median_ratio": median_ratio, "ratios": ratios,
        "overhead_percent": round(100 * (median_ratio - 1), 2), "budget_percent": 5.0,
        "target_ratio": BUDGET_RATIO, "met": median_ratio <= BUDGET_RATIO,
        "identical_trials": identical, "trials": trials,
    }
    body = (f"### Tracking overhead: median ratio **{median_ratio:.3f}** ({result['overhead_percent']:+.1f}%; "
            f"target <= {BUDGET_RATIO}: {'met' if result['met'] else 'MISSED'})\n\n"
            + common.markdown_table(
                ["search", "median with MLflow", "median without", "median paired ratio", "ratios (min..max)"],
                [["Hyperband max_epochs=3, factor 3, params.yaml space, full digits" if not args.smoke else "smoke",
                  f"{result['median_tracked_s']:.1f} s", f"{result['median_untracked_s']:.1f} s",
                  f"{median_ratio:.3f}", f"{min(ratios):.3f}..{max(ratios):.3f}"]])
            + f"\n\n{repeats} interleaved pairs (order alternates), one warm-up pair first; a fresh SQLite store "
              "per tracked run, created before the clock starts. Same work on both sides: "
            + ("**yes**, every pair ran the same trials (hyperparameters, brackets, epochs trained"
               + ("; identical in every run" if identical["all_runs"] else "") + ")"
               if identical["all_pairs"] else
               f"**no**, {same_work.count(False)} of {repeats} pairs ran different trials (see `identical_trials`)")
            + f"; {sum(same_scores)} of {repeats} pairs also had identical scores. Epochs per run: tracked "
              f"{identical['epochs_per_run']['tracked']}, untracked {identical['epochs_per_run']['untracked']}.")
    common.write_result(NAME, args, env, result, body)
    print(f"tracking overhead: {result['overhead_percent']:+.1f}% (median of {repeats} paired ratios); "
          f"identical trials in every pair: {identical['all_pairs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
