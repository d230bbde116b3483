"""Search efficiency: best accuracy reached per training epochs spent, the pipeline's Hyperband vs peers.

For each seed, the pipeline's KerasTuner Hyperband (the tune defaults: max_epochs 9, factor 3,
early-stopping patience 3, params.yaml's search space) runs first; the training epochs it
spends become the budget that KerasTuner RandomSearch, KerasTuner BayesianOptimization and
Optuna TPE + HyperbandPruner (the same space, translated to ``suggest_*`` calls, the same
``CNNHyperModel``, pruned per epoch) each get. All on digits as the preprocess stage splits it.

Every epoch of every trial is recorded (validation and test accuracy); "best at budget B" is
the best validation accuracy among the first B epochs spent, and its test accuracy is the one
of that same epoch's model.

    python bench/search_efficiency.py                 # 3 seeds, full digits, params.yaml space
    python bench/search_efficiency.py --seeds 5
    python bench/search_efficiency.py --smoke         # seconds: tiny space and data, 1 seed
    python bench/search_efficiency.py --methods bayesian   # rerun some methods only (see below)

``--methods`` without ``hyperband`` reruns only those methods, at the budgets (and seeds) of the
previous result (``--out``'s JSON, by default ``bench/results/search_efficiency.json``), and
merges them into it: the other methods' runs are kept as they were, the table and plot are
redrawn from all of them, and the JSON records which runs were measured when (``measured``).

Optuna is the optional ``bench`` extra (pip install -e ".[bench]"); without it the Optuna
row is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "search_efficiency"
METHODS = ("hyperband", "random", "bayesian", "optuna_tpe_hyperband")
LABELS = {"hyperband": "KerasTuner Hyperband (pipeline default)", "random": "KerasTuner RandomSearch",
          "bayesian": "KerasTuner BayesianOptimization", "optuna_tpe_hyperband": "Optuna TPE + HyperbandPruner"}
SMOKE_SPACE = {"architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap",
               "dense_units": 0, "batch_norm": False, "regularizer": "none", "dropout": 0.0,
               "optimizer": {"choices": ["adam", "rmsprop"]}, "lr_schedule": "constant", "batch_size": 64,
               "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"}}


class EpochLog:
    """Every epoch spent by one search, in order; stops training once ``budget`` epochs are spent."""

    def __init__(self, x_test: Any, y_test: Any, budget: int | None) -> None:
        self.x_test, self.y_test, self.budget = x_test, y_test, budget
        self.epochs: list[dict[str, Any]] = []
        self.trials = 0

    @property
    def exhausted(self) -> bool:
        return self.budget is not None and len(self.epochs) >= self.budget

    def callback(self, trial: str) -> Any:
        import keras
        import numpy as np

        log = self

        class Recorder(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                probs = self.model(log.x_test, training=False)
                test_acc = float(np.mean(np.argmax(keras.ops.convert_to_numpy(probs), axis=1) == log.y_test))
                val = (logs or {}).get("val_accuracy")
                val = float(val) if val is not None and math.isfinite(float(val)) else 0.0
                log.epochs.append({"trial": trial, "epoch": int(epoch), "val_accuracy": val,
                                   "test_accuracy": test_acc})
                if log.exhausted:
                    self.model.stop_training = True

        self.trials += 1
        return Recorder()

    def best_at(self, budget: int) -> dict[str, Any] | None:
        seen = self.epochs[:budget]
        return max(seen, key=lambda e: e["val_accuracy"]) if seen else None  # max keeps the first of ties

    def curve(self) -> list[float]:
        best, out = 0.0, []
        for e in self.epochs:
            best = max(best, e["val_accuracy"])
            out.append(best)
        return out


def make_recording_hypermodel(space: Any, input_shape: tuple[int, ...], seed: int, max_epochs: int,
                              log: EpochLog) -> Any:
    from pipeline.model.hypermodel import CNNHyperModel

    class RecordingHyperModel(CNNHyperModel):
        tuner: Any = None

        def fit(self, hp: Any, model: Any, *args: Any, callbacks: list | None = None, **kwargs: Any) -> Any:
            history = super().fit(hp, model, *args, callbacks=[*(callbacks or []), log.callback(str(id(model)))],
                                  **kwargs)
            if log.exhausted and self.tuner is not None:  # no new trial after the budget is spent
                self.tuner.oracle.max_trials = len(self.tuner.oracle.trials)
            return history

    return RecordingHyperModel(space=space, input_shape=input_shape, num_classes=10, seed=seed,
                               total_epochs=max_epochs)


def run_keras_tuner(method: str, params: Any, data: dict, seed: int, budget: int | None, workdir: Path) -> EpochLog:
    import keras

    from pipeline.tuning.search import run_search
    from pipeline.tuning.tuners import make_tuner

    keras.utils.set_random_seed(seed)
    x, y = data["train"]
    log = EpochLog(*data["test"], budget)
    tune = params.tune.model_copy(update={"tuner": method, "directory": str(workdir / method), "resume": False,
                                          # enough trials to spend the budget even if early stopping cuts them
                                          "max_trials": max(1, 4 * (budget or 1))})
    hypermodel = make_recording_hypermodel(params.search_space, x.shape[1:], seed, tune.max_epochs, log)
    tuner = make_tuner(tune, hypermodel, seed=seed, project_name=f"{method}-{seed}")
    hypermodel.tuner = tuner
    with open(os.devnull, "w") as devnull:
        run_search(tuner, tune, (x, y, *data["validation"]), stream=devnull)
    return log


def suggest(trial: Any, name: str, spec: Any) -> Any:
    """One search-space entry (``pipeline.hparams`` Fixed/Choice/Range) as an Optuna ``suggest_*`` call."""
    from pipeline.hparams import Choice, Fixed, Range

    if isinstance(spec, Fixed):
        return spec.value
    if isinstance(spec, Choice):
        return spec.choices[0] if len(spec.choices) == 1 else trial.suggest_categorical(name, list(spec.choices))
    if isinstance(spec, Range):
        log = spec.sampling == "log"
        is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.min, spec.max))
        if log and spec.step is not None:  # KerasTuner: a log step is a multiplier -> a geometric grid
            grid, value = [], spec.min
            while value <= spec.max * (1 + 1e-9):
                grid.append(int(value) if is_int else float(value))
                value *= spec.step
            return trial.suggest_categorical(name, grid)
        if is_int:
            return trial.suggest_int(name, int(spec.min), int(spec.max), step=int(spec.step or 1), log=log)
        return trial.suggest_float(name, float(spec.min), float(spec.max), step=None if log else spec.step, log=log)
    raise TypeError(f"search_space.{name}: unsupported {spec!r}")


def run_optuna(params: Any, data: dict, seed: int, budget: int) -> EpochLog:
    import keras
    import optuna

    from pipeline.model.space import hyperparameters_from_values, space_items

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras.utils.set_random_seed(seed)
    tune = params.tune
    (x, y), (x_val, y_val) = data["train"], data["validation"]
    log = EpochLog(*data["test"], budget)
    hypermodel = make_recording_hypermodel(params.search_space, x.shape[1:], seed, tune.max_epochs, log)

    class Prune(keras.callbacks.Callback):
        def __init__(self, trial: Any) -> None:
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            value = float((logs or {}).get("val_accuracy", 0.0))
            self.trial.report(value if math.isfinite(value) else 0.0, epoch + 1)  # resource = epochs done
            if self.trial.should_prune():
                self.pruned = True
                self.model.stop_training = True

    def objective(trial: Any) -> float:
        values = {name: suggest(trial, name, spec) for name, spec in space_items(params.search_space)}
        hp = hyperparameters_from_values(params.search_space, values)
        keras.backend.clear_session()  # as KerasTuner does before every trial
        model = hypermodel.build(hp)
        prune = Prune(trial)
        stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                             patience=tune.early_stopping_patience)
        history = hypermodel.fit(hp, model, x, y, validation_data=(x_val, y_val), epochs=tune.max_epochs,
                                 callbacks=[stop, prune])
        if prune.pruned:
            raise optuna.TrialPruned()
        scores = [v for v in history.history.get("val_accuracy", []) if math.isfinite(v)]
        return max(scores) if scores else 0.0

    def stop_at_budget(study: Any, trial: Any) -> None:
        if log.exhausted:
            study.stop()

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=tune.max_epochs,
                                              reduction_factor=tune.factor))
    study.optimize(objective, n_trials=4 * budget, callbacks=[stop_at_budget], catch=(Exception,))
    return log


def bench_params(smoke: bool) -> Any:
    from pipeline.config import load_params, parse_params

    if smoke:
        return parse_params({"search_space": SMOKE_SPACE, "tune": {"max_epochs": 1, "factor": 2}})
    return load_params(common.REPO / "params.yaml")  # the pipeline's own space and tune settings


def summarize(runs: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method and r.get("best_val_accuracy") is not None]
        if not mine:
            rows.append({"method": method, "seeds": 0})
            continue
        val = [r["best_val_accuracy"] for r in mine]
        test = [r["test_accuracy_of_best"] for r in mine]
        third = [r["best_val_at_third_budget"] for r in mine]
        rows.append({
            "method": method, "seeds": len(mine),
            "best_val_mean": statistics.fmean(val), "best_val_sd": statistics.pstdev(val),
            "test_mean": statistics.fmean(test), "test_sd": statistics.pstdev(test),
            "best_val_at_third_budget_mean": statistics.fmean(third),
            "epochs_mean": statistics.fmean(r["epochs"] for r in mine),
            "trials_mean": statistics.fmean(r["trials"] for r in mine),
            "seconds_mean": statistics.fmean(r["seconds"] for r in mine),
        })
    return rows


def plot(runs: list[dict[str, Any]], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in methods:
        curves = [r["curve"] for r in runs if r["method"] == method and r.get("curve")]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        arr = np.array([c[:length] for c in curves])
        xs = np.arange(1, length + 1)
        ax.step(xs, arr.mean(axis=0), where="post", label=f"{LABELS[method]} (n={len(curves)})")
        ax.fill_between(xs, arr.min(axis=0), arr.max(axis=0), step="post", alpha=0.15)
    ax.set_xlabel("training epochs spent (all trials)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title("Search efficiency on digits (mean over seeds, band = min..max)")
    ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(rows: list[dict[str, Any]], budgets: list[int], plot_path: Path, skipped: dict[str, str]) -> str:
    table = []
    for row in rows:
        if not row.get("seeds"):
            table.append([LABELS[row["method"]], "skipped: " + skipped.get(row["method"], "no result"),
                          "", "", "", "", ""])
            continue
        table.append([LABELS[row["method"]], row["seeds"],
                      f"{row['best_val_mean']:.4f} ± {row['best_val_sd']:.4f}",
                      f"{row['test_mean']:.4f} ± {row['test_sd']:.4f}",
                      f"{row['best_val_at_third_budget_mean']:.4f}",
                      f"{row['trials_mean']:.1f}", f"{row['seconds_mean']:.0f}"])
    header = ["method", "seeds", "best val acc at budget", "test acc of that model", "best val at 1/3 budget",
              "trials", "wall s"]
    try:
        shown = plot_path.resolve().relative_to(common.REPO)
    except ValueError:
        shown = plot_path
    return (f"### Search efficiency (matched epoch budgets: {budgets} epochs per seed = what Hyperband spent)\n\n"
            + common.markdown_table(header, table) + f"\n\nPlot: `{shown}` (best validation accuracy vs "
            "epochs spent). Interpretation and where the pipeline loses: see the notes below the table.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help="search seeds (default 3; smoke 1)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of " + ",".join(METHODS)
                        + "; without hyperband: rerun these at the previous result's budgets and merge")
    args = parser.parse_args()
    env = common.environment()
    common.quiet_tensorflow()
    # Hyperband continues a trial from its parent's weights only; Keras warns about the optimizer each time
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown or not methods:
        parser.error(f"--methods: unknown {sorted(unknown)}; allowed: {','.join(METHODS)}")
    out = common.output_path(NAME, args)
    previous: dict[str, Any] | None = None
    if "hyperband" not in methods:  # rerun some methods at the budgets Hyperband spent in the previous result
        if not out.is_file():
            parser.error(f"--methods without hyperband needs a previous result to merge into: {out} not found")
        previous = json.loads(out.read_text())
        seeds = list(previous["seeds"])[: args.seeds or None]
        previous_budgets = dict(zip(previous["seeds"], previous["budgets"], strict=True))
    else:
        seeds = list(range(args.seeds or (1 if args.smoke else 3)))
    params = bench_params(args.smoke)
    data = common.digits_splits(seed=42, max_samples=200 if args.smoke else None)
    skipped: dict[str, str] = {}
    if "optuna_tpe_hyperband" in methods:
        try:
            import optuna  # noqa: F401
        except ImportError:
            skipped["optuna_tpe_hyperband"] = "optuna not installed (pip install -e '.[bench]')"
    runs: list[dict[str, Any]] = []
    budgets: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        for index, seed in enumerate(seeds):
            budget = previous_budgets[seed] if previous is not None else None
            if previous is not None:
                budgets.append(budget)
            for method in methods:
                if method in skipped:
                    continue
                start = time.perf_counter()
                if method == "optuna_tpe_hyperband":
                    log = run_optuna(params, data, seed, budget)
                else:
                    log = run_keras_tuner(method, params, data, seed, budget, Path(tmp) / f"seed{seed}")
                seconds = time.perf_counter() - start
                if method == "hyperband":
                    budget = len(log.epochs)
                    budgets.append(budget)
                best = log.best_at(budget)
                third = log.best_at(max(1, budget // 3))
                runs.append({
                    "method": method, "seed": seed, "budget": budget, "epochs": len(log.epochs),
                    "measured": env["date"],
                    "trials": log.trials, "seconds": seconds,
                    "best_val_accuracy": best["val_accuracy"] if best else None,
                    "test_accuracy_of_best": best["test_accuracy"] if best else None,
                    "best_val_at_third_budget": third["val_accuracy"] if third else None,
                    "curve": log.curve()[:budget],
                })
                print(f"seed {seed} {method:22s} epochs {len(log.epochs):3d}/{budget} trials {log.trials:3d} "
                      f"best val {runs[-1]['best_val_accuracy']:.4f} test {runs[-1]['test_accuracy_of_best']:.4f} "
                      f"({seconds:.0f} s)", flush=True)
            # after every seed: a complete result for the seeds done so far (a long run can be cut short)
            write(args, env, params, methods, seeds[:index + 1], budgets, skipped, runs, out, previous)
    return 0


def write(args: argparse.Namespace, env: dict[str, Any], params: Any, methods: list[str], seeds: list[int],
          budgets: list[int], skipped: dict[str, str], runs: list[dict[str, Any]], out: Path,
          previous: dict[str, Any] | None = None) -> None:
    merged_from = None
    if previous is not None:  # keep the previous result's other methods (and its seeds not rerun yet)
        rerun = {(r["method"], r["seed"]) for r in runs}
        kept = [{**r, "measured": r.get("measured", previous["environment"]["date"])} for r in previous["runs"]
                if (r["method"], r["seed"]) not in rerun]
        order = {m: i for i, m in enumerate(METHODS)}
        runs = sorted(kept + runs, key=lambda r: (r["seed"], order[r["method"]]))
        seeds, budgets = list(previous["seeds"]), list(previous["budgets"])
        # a method skipped before (optuna not installed) has no runs but still a summary row: keep it, so a
        # merge gives the same rows with and without optuna; its skip reason stays unless it was rerun now
        skipped = {**{k: v for k, v in previous.get("skipped", {}).items() if k not in methods}, **skipped}
        previous_methods = {row["method"] for row in previous.get("summary", [])} | set(skipped)
        methods = [m for m in METHODS if any(r["method"] == m for r in runs) or m in methods or m in previous_methods]
        merged_from = {"command": previous["command"], "date": previous["environment"]["date"],
                       "git_commit": previous["environment"].get("git_commit"),
                       "rerun_methods": sorted({m for m, _ in rerun})}
    rows = summarize(runs, methods)
    plot_path = out.with_suffix(".png")
    plot(runs, methods, plot_path)
    result = {"seeds": seeds, "budgets": budgets, "max_epochs": params.tune.max_epochs, "factor": params.tune.factor,
              "bayesian_initial_points": params.tune.bayesian_initial_points,
              "skipped": skipped, "summary": rows, "runs": runs, "plot": str(plot_path), "merged_from": merged_from}
    body = section(rows, budgets, plot_path, skipped)
    if merged_from is not None:
        body += (f"\n\nRerun of {', '.join(LABELS[m] for m in merged_from['rerun_methods'])} only (the command "
                 f"below), at the budgets Hyperband spent in the run of {merged_from['date']} "
                 f"(`{merged_from['command']}`, git {merged_from['git_commit']}), whose other rows are kept.")
    common.write_result(NAME, args, env, result, body)


if __name__ == "__main__":
    sys.exit(main())
