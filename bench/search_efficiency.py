"""Search efficiency: the pipeline's default search vs peers at matched epochs and matched wall time.

Per seed, the pipeline's default search runs first, exactly as ``dvc repro`` runs it
(``pipeline.tuning.session.tune`` with params.yaml: tuner ``bohb`` with its ``initial_points``;
MLflow tracking off, the search in one process). The training epochs it spends (B) and its
wall time (T) are that seed's budgets. Each peer then runs until it has spent both B epochs
and T seconds, so it can be read at either:

  bohb          the same BOHB without initial points
  hyperband     KerasTuner Hyperband            (all four through make_tuner and tune(): the
  bayesian      KerasTuner BayesianOptimization  tracked tuner code, the same CNNHyperModel,
  random        KerasTuner RandomSearch          fit_model and early stopping)
  optuna_tpe_hyperband  Optuna TPE + HyperbandPruner: the same space as suggest_* calls, the
                same CNNHyperModel/fit_model, pruned per epoch

Every epoch of every trial is recorded with its validation accuracy, the test accuracy of that
epoch's model (a callback evaluates it) and when it ended. "Best at budget b" is the best
validation accuracy among the epochs spent (or ended) within b, and its test accuracy is that
same epoch's model's. Budgets are read at 1/3, 2/3 and all of B and of T. The clock excludes
the benchmark's own test evaluation.

Every measured search runs in a fresh process (``--one METHOD SEED``): TensorFlow slows
later models in a long-lived process. The same processes measure each method's fixed cost per
trial (wall time beyond its epochs); ``--before COMMIT`` also measures the Hyperband of an
older commit, in a temporary ``git worktree`` with that commit's own code, each seed followed
by the same harness on this checkout (``--methods hyperband_before`` redoes only that pair).
The default's child then retrains the search's best configuration(s) with
``pipeline.model.final.train_final`` as the ``train`` stage does (``train.configurations`` x
``train.seeds`` members), to measure the gap between the search's validation score and the
final model's. scikit-learn baselines (LogisticRegression, SVC) run on the same split.

    python bench/search_efficiency.py                      # 5 seeds, full digits, params.yaml
    python bench/search_efficiency.py --seeds 3
    python bench/search_efficiency.py --smoke              # seconds: tiny space and data, 1 seed
    python bench/search_efficiency.py --methods bayesian   # rerun some methods, merged (see below)

``--methods`` without ``default`` reruns only those methods, at the budgets and seeds of the
previous result (``--out``'s JSON) and merges them into it: other runs are kept as they were
and the JSON records when each was measured. Wall-time budgets of a rerun compare across
different machine load: read its wall-time rows with that in mind.

Optuna is the optional ``bench`` extra (pip install -e ".[bench]"); without it the Optuna
row is reported as skipped. ``--smoke`` starts two processes (the default, then all peers in
one) instead of one per search, and its peers stop at the epoch budget alone, to stay short.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "search_efficiency"
DEFAULT = "default"
OPTUNA = "optuna_tpe_hyperband"
METHODS = (DEFAULT, "bohb", "hyperband", "bayesian", "random", OPTUNA)
BEFORE = "hyperband_before"  # --before COMMIT: that commit's Hyperband, for the fixed cost per trial only
NOW = "hyperband_now"  # the same harness on this checkout, interleaved with BEFORE
LABELS = {DEFAULT: "pipeline default: BOHB + initial_points", "bohb": "BOHB, no initial points",
          "hyperband": "KerasTuner Hyperband", "bayesian": "KerasTuner BayesianOptimization",
          "random": "KerasTuner RandomSearch", OPTUNA: "Optuna TPE + HyperbandPruner", BEFORE: "Hyperband at {commit}",
          NOW: "Hyperband now, same harness as {commit}'s"}
FRACTIONS = ((1, 3), (2, 3), (1, 1))
FULL_SEEDS = 5
BEFORE_SEEDS = 2
PEER_ITERATIONS = 3  # Hyperband-family peers repeat their brackets until both budgets are spent
PEER_MAX_TRIALS = 1000  # random/bayesian: the budget stops them, not a trial count
TIME_CAP = 4.0  # a peer stops at this many times the default's wall time even short of the epoch budget
SMOKE_SPACE = {"architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap",
               "dense_units": 0, "batch_norm": False, "regularizer": "none", "dropout": 0.0,
               "optimizer": {"choices": ["adam", "rmsprop"]}, "lr_schedule": "constant", "batch_size": 64,
               "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"}}
SMOKE_TUNE = {"max_epochs": 1, "factor": 2, "initial_points": [{"optimizer": "adam", "learning_rate": 3.0e-3}]}


# ----------------------------------------------------------------------------------- child process
class SearchLog:
    """Every epoch one search spends, timed on a clock that leaves out this benchmark's own test evaluation.

    The search stops once it has spent ``budget_epochs`` epochs and ``budget_seconds`` seconds
    (either None: no such budget), or ``TIME_CAP`` times the seconds.
    """

    def __init__(self, x_test: Any, y_test: Any, budget_epochs: int | None, budget_seconds: float | None,
                 smoke: bool = False) -> None:
        self.x_test, self.y_test, self.smoke = x_test, y_test, smoke
        self.budget_epochs, self.budget_seconds = budget_epochs, budget_seconds
        self.epochs: list[dict[str, Any]] = []
        self.trial_starts: list[float] = []
        self.started = self.ended = None
        self.instrumentation = 0.0
        self.stop_search: Callable[[], None] = lambda: None
        self.stopped_by_budget = False

    def clock(self) -> float:
        return time.perf_counter() - (self.started or 0.0) - self.instrumentation

    def start(self) -> None:
        self.started, self.instrumentation = time.perf_counter(), 0.0

    def end(self) -> None:
        self.ended = self.clock()

    def spent(self) -> bool:
        if self.budget_epochs is None and self.budget_seconds is None:
            return False
        now = self.clock()
        if self.smoke:  # seconds matter only in a measured run: a smoke run stops at the epoch budget
            return len(self.epochs) >= (self.budget_epochs or 0)
        if self.budget_seconds is not None and now >= TIME_CAP * self.budget_seconds:
            return True
        return (len(self.epochs) >= (self.budget_epochs or 0)) and now >= (self.budget_seconds or 0.0)

    def callback(self) -> Any:
        import keras
        import numpy as np

        log = self
        trial = len(self.trial_starts) - 1

        class Recorder(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                self.begin = log.clock()

            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                ended = log.clock()
                probs = self.model(log.x_test, training=False)
                test = float(np.mean(np.argmax(keras.ops.convert_to_numpy(probs), axis=1) == log.y_test))
                val = (logs or {}).get("val_accuracy")
                val = float(val) if val is not None and math.isfinite(float(val)) else 0.0
                first = not log.epochs or log.epochs[-1]["trial"] != trial
                log.epochs.append({"trial": trial, "epoch": int(epoch), "val": val, "test": test,
                                   "t_end": round(ended, 4), "seconds": round(ended - self.begin, 4),
                                   "first_of_trial": first})
                log.instrumentation += log.clock() - ended  # the test evaluation is not the search's time
                if log.spent():
                    log.stopped_by_budget = True
                    self.model.stop_training = True
                    log.stop_search()

        return Recorder()

    def result(self) -> dict[str, Any]:
        trials = []
        ends = [*self.trial_starts[1:], self.ended if self.ended is not None else self.clock()]
        for index, (start, end) in enumerate(zip(self.trial_starts, ends, strict=True)):
            trials.append({"start": round(start, 4), "seconds": round(end - start, 4),
                           "epochs": sum(1 for e in self.epochs if e["trial"] == index)})
        return {"epochs": self.epochs, "trials": trials, "search_seconds": self.ended,
                "instrumentation_seconds": self.instrumentation, "stopped_by_budget": self.stopped_by_budget,
                "budget": {"epochs": self.budget_epochs, "seconds": self.budget_seconds}}


def recording_hypermodel(base: type, log: SearchLog, **kwargs: Any) -> Any:
    """``base`` (a ``CNNHyperModel``) that marks each trial's start and records each epoch."""

    class RecordingHyperModel(base):
        def build(self, hp: Any) -> Any:
            if log.started is not None:  # KerasTuner also builds once when the tuner is made, before the search
                log.trial_starts.append(log.clock())  # trial n's span: its build to trial n+1's
            return super().build(hp)

        def fit(self, hp: Any, model: Any, *args: Any, callbacks: list | None = None, **fit_kwargs: Any) -> Any:
            return super().fit(hp, model, *args, callbacks=[*(callbacks or []), log.callback()], **fit_kwargs)

    return RecordingHyperModel(**kwargs)


def params_yaml() -> dict[str, Any]:
    from pipeline.strict_yaml import load_yaml

    return load_yaml((common.REPO / "params.yaml").read_text(), "params.yaml") or {}


def method_params(method: str, seed: int, smoke: bool, workdir: Path) -> Any:
    """params.yaml (or the smoke settings) as the pipeline validates it, changed only where ``method`` needs."""
    from pipeline.config import parse_params

    raw = {"search_space": SMOKE_SPACE, "tune": dict(SMOKE_TUNE), "train": {"epochs": 1, "seeds": 1}} if smoke \
        else params_yaml()
    tune = {**raw.get("tune", {}), "directory": str(workdir / "tuner"), "resume": False, "trials_per_process": 0}
    if method != DEFAULT:
        tune["initial_points"] = []
    if method in ("bohb", "hyperband"):
        tune.update(tuner=method, hyperband_iterations=PEER_ITERATIONS)
    elif method in ("bayesian", "random"):
        tune.update(tuner=method, max_trials=PEER_MAX_TRIALS)
    return parse_params({**raw, "seed": seed, "tune": tune})


@contextmanager
def timed_run_search(log: SearchLog) -> Iterator[None]:
    """Time exactly ``run_search`` inside ``tune()`` (not output writing) and let the log stop its tuner."""
    from pipeline.tuning import search as search_module

    original = search_module.run_search

    def wrapper(tuner: Any, tune: Any, data: Any, **kwargs: Any) -> Any:  # stream=, budget=: passed on
        def stop() -> None:  # no new trial after the budget: the oracle's own trial limit
            tuner.oracle.max_trials = len(tuner.oracle.trials)

        log.stop_search = stop
        log.start()
        try:
            return original(tuner, tune, data, **kwargs)
        finally:
            log.end()

    search_module.run_search = wrapper  # tune() imports it when called
    try:
        yield
    finally:
        search_module.run_search = original


def run_pipeline(method: str, params: Any, splits: dict, meta: dict, log: SearchLog, out_dir: Path) -> dict:
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.tuning.session import tune

    x, y = splits["train"]
    hypermodel = recording_hypermodel(CNNHyperModel, log, space=params.search_space, input_shape=x.shape[1:],
                                      num_classes=meta["num_classes"], seed=params.seed,
                                      total_epochs=params.tune.max_epochs)  # as session.hypermodel_for
    with timed_run_search(log):
        return tune(params, hypermodel, (x, y, *splits["validation"]), meta["fingerprint"], tracking_uri=None,
                    hp_names=list(type(params.search_space).model_fields), out_dir=out_dir)


def run_before(seed: int, splits: dict, meta: dict, log: SearchLog, workdir: Path) -> None:
    """An older commit's Hyperband with its own code (on sys.path first), on today's space minus augmentation."""
    import keras
    import yaml  # not the strict loader: the old commit has none, and this file is the known params.yaml

    from pipeline.config import parse_params
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.tuning.search import run_search
    from pipeline.tuning.tuners import make_tuner

    raw = yaml.safe_load((common.REPO / "params.yaml").read_text())
    space = {k: v for k, v in raw["search_space"].items() if not k.startswith("augment_")}  # not in old schema
    keep = ("objective", "max_epochs", "factor", "early_stopping_patience", "max_consecutive_failed_trials")
    tune = {**{k: raw["tune"][k] for k in keep if k in raw["tune"]}, "tuner": "hyperband",
            "directory": str(workdir / "tuner"), "resume": False}
    params = parse_params({"seed": seed, "search_space": space, "tune": tune})
    x, y = splits["train"]
    hypermodel = recording_hypermodel(CNNHyperModel, log, space=params.search_space, input_shape=x.shape[1:],
                                      num_classes=meta["num_classes"], seed=seed, total_epochs=params.tune.max_epochs)
    keras.utils.set_random_seed(seed)
    tuner = make_tuner(params.tune, hypermodel, seed=seed, project_name=f"before-{seed}")
    log.start()
    with open(os.devnull, "w") as devnull:
        run_search(tuner, params.tune, (x, y, *splits["validation"]), stream=devnull)
    log.end()


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


def run_optuna(params: Any, splits: dict, meta: dict, log: SearchLog) -> None:
    import keras
    import optuna

    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.model.space import hyperparameters_from_values, space_items

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras.utils.set_random_seed(params.seed)
    tune = params.tune
    (x, y), (x_val, y_val) = splits["train"], splits["validation"]
    hypermodel = recording_hypermodel(CNNHyperModel, log, space=params.search_space, input_shape=x.shape[1:],
                                      num_classes=meta["num_classes"], seed=params.seed, total_epochs=tune.max_epochs)

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

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=tune.max_epochs,
                                              reduction_factor=tune.factor))
    log.stop_search = study.stop  # Optuna lets the running trial finish (it was told to stop training)
    log.start()
    study.optimize(objective, n_trials=PEER_MAX_TRIALS, catch=(Exception,))
    log.end()


def retrain_gap(params: Any, best: dict[str, Any], splits: dict, meta: dict) -> dict[str, Any]:
    """The ``train`` stage's final model from this search's best_hparams: its validation score vs the search's."""
    import keras
    import numpy as np

    from pipeline.model.final import member_plan, train_final
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.model.space import hyperparameters_from_values
    from pipeline.stages.train import candidates_of

    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["validation"], splits["test"]

    def build(values: dict[str, Any], seed: int) -> Any:
        hypermodel = CNNHyperModel(space=params.search_space, input_shape=x.shape[1:],
                                   num_classes=meta["num_classes"], seed=seed, total_epochs=params.train.epochs)
        return hypermodel.build(hyperparameters_from_values(params.search_space, values))

    def test_accuracy(model: Any) -> float:
        probs = keras.ops.convert_to_numpy(model.predict(x_test, batch_size=256, verbose=0))
        return float(np.mean(np.argmax(probs, axis=1) == y_test))

    objective = best.get("objective") or params.tune.objective
    candidates = [{**c, "values": dict(hyperparameters_from_values(params.search_space, c["values"]).values)}
                  for c in member_plan(candidates_of(best), params.train.configurations, params.train.seeds,
                                       params.seed)]
    start = time.perf_counter()
    final = train_final(candidates, build, (x, y, x_val, y_val), epochs=params.train.epochs,
                        patience=params.train.early_stopping_patience, objective=objective, seed=params.seed,
                        tolerance=params.train.reproduce_tolerance, margin=params.train.ensemble_margin)
    return {"objective": objective, "search_score": float(best["score"]), "final_score": final.score,
            "final_test_accuracy": test_accuracy(final.model), "seconds": time.perf_counter() - start,
            "epochs": params.train.epochs, "ensemble": len(final.members),
            "configurations": params.train.configurations, "seeds": params.train.seeds,
            "members": [{**m.summary(), "test_accuracy": test_accuracy(m.model)} for m in final.members]}


def run_child(args: argparse.Namespace) -> int:
    """``--one METHOD SEED`` (repeatable): run these searches here and write their results to ``--json-out``."""
    if args.code_root:  # an older commit's pipeline package must shadow this checkout's
        sys.path.insert(0, str(Path(args.code_root).resolve()))
    common.quiet_tensorflow()
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    import pipeline

    code = Path(pipeline.__file__).resolve().parents[1]
    splits, meta = common.digits_data(seed=42, max_samples=200 if args.smoke else None)
    workdir = Path(args.workdir)
    results = []
    for method, seed_text in args.one:
        seed = int(seed_text)
        log = SearchLog(*splits["test"], args.budget_epochs, args.budget_seconds, smoke=args.smoke)
        where = workdir / f"{method}-{seed}"
        result: dict[str, Any] = {"method": method, "seed": seed, "code": str(code), "pid": os.getpid()}
        if method == BEFORE:
            run_before(seed, splits, meta, log, where)
        elif method == OPTUNA:
            run_optuna(method_params(method, seed, args.smoke, where), splits, meta, log)
        else:
            params = method_params(method, seed, args.smoke, where)
            best = run_pipeline(method, params, splits, meta, log, where / "out")
            result["best_hparams"] = {k: best.get(k) for k in ("trial_id", "score", "values", "epochs")}
            if method == DEFAULT and not args.no_retrain:
                import keras

                keras.backend.clear_session()
                result["retrain"] = retrain_gap(params, best, splits, meta)
        results.append({**result, **log.result()})
        print(f"{method} seed {seed}: {len(log.epochs)} epochs, {len(log.trial_starts)} trials, "
              f"{log.ended:.1f} s, best val {max((e['val'] for e in log.epochs), default=0.0):.4f}", flush=True)
    Path(args.json_out).write_text(json.dumps(results))
    return 0


# ---------------------------------------------------------------------------------- parent process
def run_children(jobs: list[tuple[str, int]], args: argparse.Namespace, tmp: Path, measured: str,
                 budget: dict | None = None, code_root: str | None = None) -> list[dict[str, Any]]:
    """Run ``jobs`` in one fresh process; a failure is reported as an error row, not raised."""
    tag = "_".join(f"{m}-{s}" for m, s in jobs)
    out, log_path = tmp / f"{tag}.json", tmp / f"{tag}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--json-out", str(out), "--workdir", str(tmp / tag)]
    for method, seed in jobs:
        cmd += ["--one", method, str(seed)]
    if args.smoke:
        cmd.append("--smoke")
    if args.no_retrain:
        cmd.append("--no-retrain")
    if budget is not None:
        cmd += ["--budget-epochs", str(budget["epochs"]), "--budget-seconds", f"{budget['seconds']:.4f}"]
    if code_root is not None:
        cmd += ["--code-root", code_root]
    start = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(cmd, cwd=common.REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0 or not out.is_file():
        tail = log_path.read_text()[-3000:]
        print(f"FAILED ({code}): {' '.join(cmd)}\n{tail}", flush=True)
        return [{"method": m, "seed": s, "error": f"exit {code}: {tail[-500:]}"} for m, s in jobs]
    runs = json.loads(out.read_text())
    for run in runs:
        run["process_seconds"] = time.perf_counter() - start
        run["measured"] = measured
    return runs


def best_within(run: dict[str, Any], epochs: int | None = None, seconds: float | None = None) -> dict | None:
    """The best-validation epoch among the first ``epochs`` epochs or those ended by ``seconds``."""
    seen = run["epochs"][:epochs] if epochs is not None else [e for e in run["epochs"] if e["t_end"] <= seconds]
    return max(seen, key=lambda e: e["val"]) if seen else None  # max keeps the first of ties


def fraction_label(num: int, den: int) -> str:
    return "full" if num == den else f"{num}/{den}"


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1
            else 0.0, "min": min(values), "max": max(values)}


def best_at(run: dict[str, Any], budgets: dict[int, dict], axis: str, fraction: float) -> dict | None:
    """The run's best epoch within ``fraction`` of its seed's budget on ``axis`` (epochs or seconds)."""
    total = budgets[run["seed"]][axis]
    if axis == "epochs":
        return best_within(run, epochs=max(1, round(total * fraction)))
    return best_within(run, seconds=total * fraction + 1e-9)


def summarize(runs: list[dict[str, Any]], methods: list[str], budgets: dict[int, dict]) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        mine = [r for r in runs if r["method"] == method and r.get("epochs") and r["seed"] in budgets]
        row: dict[str, Any] = {"method": method, "seeds": len(mine)}
        for axis in ("epochs", "seconds"):
            row[f"at_{axis}"] = {}
            for num, den in FRACTIONS:
                best = [best_at(r, budgets, axis, num / den) for r in mine]
                row[f"at_{axis}"][fraction_label(num, den)] = {
                    "val": spread([b["val"] for b in best if b]), "test": spread([b["test"] for b in best if b]),
                    "no_epoch_yet": sum(b is None for b in best)}
        if mine:
            row["trials_mean"] = statistics.fmean(len(r["trials"]) for r in mine)
            row["epochs_mean"] = statistics.fmean(len(r["epochs"]) for r in mine)
            row["search_seconds_mean"] = statistics.fmean(r["search_seconds"] for r in mine)
            row["stopped_by_budget"] = sum(bool(r.get("stopped_by_budget")) for r in mine)
        rows.append(row)
    return rows


def fixed_cost(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Seconds per trial beyond its epochs, pooled over seeds; see ``section`` for the definitions."""
    import numpy as np

    runs = [r for r in runs if r.get("trials")]
    if not runs:
        return None
    epochs = [e for r in runs for e in r["epochs"]]
    steady = [e["seconds"] for e in epochs if not e["first_of_trial"]]
    first = [e["seconds"] for e in epochs if e["first_of_trial"]]
    if not steady:
        return None
    epoch_s = statistics.median(steady)
    spans, counts, outside = [], [], []
    for run in runs:
        for index, trial in enumerate(run["trials"]):
            spans.append(trial["seconds"])
            counts.append(trial["epochs"])
            outside.append(trial["seconds"] - sum(e["seconds"] for e in run["epochs"] if e["trial"] == index))
    fixed = [s - n * epoch_s for s, n in zip(spans, counts, strict=True)]
    out = {"runs": len(runs), "trials": len(spans), "epochs_per_trial": statistics.fmean(counts),
           "seconds_per_trial": statistics.fmean(spans), "steady_epoch_seconds": epoch_s,
           "first_epoch_extra_seconds": (statistics.median(first) - epoch_s) if first else None,
           "outside_fit_seconds": statistics.fmean(outside), "fixed_seconds_per_trial": statistics.fmean(fixed),
           "fixed_share_of_wall_time": sum(fixed) / sum(spans) if sum(spans) else None}
    if len(set(counts)) > 1:  # a regression needs trials of different lengths
        slope, intercept = np.polyfit(np.array(counts, float), np.array(spans, float), 1)
        out.update(regression_seconds_per_epoch=float(slope), regression_intercept_seconds=float(intercept))
    return out


def sklearn_baselines(splits: dict) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    (x, y), (x_val, y_val), (x_test, y_test) = splits["train"], splits["validation"], splits["test"]
    flat = [a.reshape(len(a), -1) for a in (x, x_val, x_test)]
    out = {}
    for name, model in (("LogisticRegression(max_iter=2000)", LogisticRegression(max_iter=2000)), ("SVC()", SVC())):
        start = time.perf_counter()
        model.fit(flat[0], y)
        out[name] = {"val_accuracy": float(model.score(flat[1], y_val)),
                     "test_accuracy": float(model.score(flat[2], y_test)), "fit_seconds": time.perf_counter() - start}
    return out


@contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A read-only checkout of ``commit`` (git worktree), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="bench-before-")) / "tree"
    subprocess.run(["git", "-C", str(common.REPO), "worktree", "add", "--detach", str(path), commit], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(common.REPO), "worktree", "remove", "--force", str(path)],
                       capture_output=True)
        shutil.rmtree(path.parent, ignore_errors=True)  # mkdtemp's folder around it


def plot(runs: list[dict[str, Any]], methods: list[str], budgets: dict[int, dict], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fraction of T in which no seed has an epoch yet: NaN
        draw(runs, methods, budgets, path)


def draw(runs: list[dict[str, Any]], methods: list[str], budgets: dict[int, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.linspace(0.0, 1.0, 61)[1:]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, axis in zip(axes, ("epochs", "seconds"), strict=True):
        for method in methods:
            curves = [[(b or {}).get("val", np.nan) for b in (best_at(run, budgets, axis, f) for f in grid)]
                      for run in runs if run["method"] == method and run.get("epochs") and run["seed"] in budgets]
            if not curves:
                continue
            arr = np.array(curves)
            line = ax.plot(grid, np.nanmean(arr, axis=0), label=f"{LABELS[method]} (n={len(curves)})")[0]
            ax.fill_between(grid, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), alpha=0.12,
                            color=line.get_color())
        ax.set_xlabel("fraction of the default's " + ("training epochs" if axis == "epochs" else "wall time"))
        ax.grid(alpha=0.3)
        ax.set_title(f"matched {axis} (mean over seeds, band = min..max)", fontsize=10)
    axes[0].set_ylabel("best validation accuracy so far")
    axes[0].set_ylim(bottom=max(0.5, axes[0].get_ylim()[0]))
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- report
def cell(stats: dict[str, Any], digits: int = 3) -> str:
    if not stats.get("n"):
        return "-"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def label(method: str, before_commit: str | None = None) -> str:
    return LABELS[method].format(commit=before_commit or "?")


def accuracy_table(rows: list[dict[str, Any]], axis: str, skipped: dict[str, str]) -> str:
    keys = [fraction_label(n, d) for n, d in FRACTIONS]
    header = ["method", "seeds", *(f"best val @ {k}" for k in keys), *(f"its test @ {k}" for k in keys)]
    table = []
    for row in rows:
        if not row.get("seeds"):
            table.append([label(row["method"]), "skipped: " + skipped.get(row["method"], "no result"),
                          *[""] * (2 * len(keys))])
            continue
        at = row[f"at_{axis}"]
        missing = ", ".join(f"{k} in {at[k]['no_epoch_yet']} seed(s)" for k in keys if at[k]["no_epoch_yet"])
        table.append([label(row["method"]) + (f" (no epoch ended yet by {missing})" if missing else ""),
                      row["seeds"], *(cell(at[k]["val"]) for k in keys), *(cell(at[k]["test"]) for k in keys)])
    return common.markdown_table(header, table)


def fixed_cost_table(costs: dict[str, Any], before_commit: str | None) -> str:
    header = ["method", "trials (runs)", "epochs/trial", "s/trial", "steady s/epoch", "fixed s/trial",
              "of it: first-epoch extra", "of it: outside fit()", "regression: intercept s, s/epoch",
              "fixed share of wall time"]
    table = []
    for method, c in costs.items():
        if c is None:
            continue
        regression = (f"{c['regression_intercept_seconds']:.2f}, {c['regression_seconds_per_epoch']:.2f}"
                      if "regression_intercept_seconds" in c else "-")
        first = "-" if c["first_epoch_extra_seconds"] is None else f"{c['first_epoch_extra_seconds']:.2f}"
        table.append([label(method, before_commit), f"{c['trials']} ({c['runs']})", f"{c['epochs_per_trial']:.2f}",
                      f"{c['seconds_per_trial']:.2f}", f"{c['steady_epoch_seconds']:.3f}",
                      f"{c['fixed_seconds_per_trial']:.2f}", first, f"{c['outside_fit_seconds']:.2f}", regression,
                      f"{100 * (c['fixed_share_of_wall_time'] or 0):.0f}%"])
    return common.markdown_table(header, table)


def retrain_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        retrain = run.get("retrain")
        if run["method"] != DEFAULT or not retrain:
            continue
        best = best_within(run, epochs=len(run["epochs"]))
        out.append({"seed": run["seed"], "search_score": retrain["search_score"], "final_score": retrain["final_score"],
                    "gap": retrain["final_score"] - retrain["search_score"],
                    "final_test_accuracy": retrain["final_test_accuracy"],
                    "search_best_epoch_test_accuracy": best["test"] if best else None,
                    "ensemble": retrain["ensemble"], "epochs": retrain["epochs"], "members": retrain["members"],
                    **{k: retrain[k] for k in ("configurations", "seeds") if k in retrain}})
    return out


def retrain_table(rows: list[dict[str, Any]]) -> str:
    table = []
    for r in rows:
        members = "; ".join(f"{m['search_score']:.3f}->{m['retrained_score']:.3f}"
                            + ("" if m["source"] == "retrained" else f" ({m['source']})")
                            + ("" if m.get("in_ensemble", True) else " (left out)") for m in r["members"])
        table.append([r["seed"], f"{r['search_score']:.4f}", f"{r['final_score']:.4f}", f"{r['gap']:+.4f}",
                      members, f"{r['final_test_accuracy']:.4f}", f"{r['search_best_epoch_test_accuracy']:.4f}"])
    if len(rows) > 1:
        mean = {k: statistics.fmean(r[k] for r in rows) for k in ("search_score", "final_score", "gap",
                                                                  "final_test_accuracy",
                                                                  "search_best_epoch_test_accuracy")}
        table.append(["**mean**", f"{mean['search_score']:.4f}", f"{mean['final_score']:.4f}", f"{mean['gap']:+.4f}",
                      "", f"{mean['final_test_accuracy']:.4f}", f"{mean['search_best_epoch_test_accuracy']:.4f}"])
    header = ["seed", "search's best val", "final model val", "gap", "members: search -> retrained val",
              "final model test", "test of the search's best epoch"]
    return common.markdown_table(header, table)


def section(result: dict[str, Any], plot_path: Path) -> str:
    rows, skipped = result["summary"], result["skipped"]
    budgets = result["budgets"]
    try:
        shown = plot_path.resolve().relative_to(common.REPO)
    except ValueError:
        shown = plot_path
    before = result.get("before") or {}
    parts = []
    if result.get("reduced"):
        parts.append(f"**Reduced run: {len(result['seeds'])} seeds, not {FULL_SEEDS}** (the full one: "
                     f"`{result['full_command']}`).\n")
    parts += [
        f"### Search efficiency: the pipeline default vs peers, {len(result['seeds'])} seeds\n",
        "Budgets per seed = what the default spent (epochs B, wall seconds T): "
        + ", ".join(f"seed {b['seed']}: {b['epochs']} epochs / {b['seconds']:.0f} s" for b in budgets) + ".\n",
        "**Matched training epochs** (mean, min-max over seeds): best validation accuracy within 1/3, 2/3 and all "
        "of B epochs, and the test accuracy of that epoch's model\n",
        accuracy_table(rows, "epochs", skipped) + "\n",
        "**Matched wall time** (same, within 1/3, 2/3 and all of T seconds of search)\n",
        accuracy_table(rows, "seconds", skipped) + "\n",
        "**Fixed cost per trial** (pooled over seeds): fixed = a trial's wall time (its build to the next trial's) "
        "minus its epochs x the median steady epoch (an epoch that is not its trial's first); split into the first "
        "epoch's extra time (graph tracing) and the time outside `fit()` (build, compile, checkpoint load/save, "
        "oracle); the regression of trial seconds on epochs is a cross-check\n",
        fixed_cost_table(result["fixed_cost"], before.get("commit")) + "\n",
    ]
    if before.get("note"):
        parts.append(before["note"] + "\n")
    parts += ["**scikit-learn baselines** on the same split (flattened pixels, fit on the training split)\n",
              common.markdown_table(["model", "val acc", "test acc", "fit s"],
                                    [[k, f"{v['val_accuracy']:.4f}", f"{v['test_accuracy']:.4f}",
                                      f"{v['fit_seconds']:.2f}"] for k, v in result["baselines"].items()]) + "\n"]
    if result["retrain"]:
        r0 = result["retrain"][0]
        # results measured before train.configurations/seeds existed retrained the top distinct configurations
        how = (f"the best {r0['configurations']} configuration(s) x {r0['seeds']} seeds" if "seeds" in r0
               else f"the top {r0['ensemble']} distinct configurations (`train.ensemble`, the train stage then)")
        parts += [f"**Search score vs the final model** (`train_final` on the default's best_hparams, as the train "
                  f"stage does: {how}, retrained {r0['epochs']} epochs and averaged)\n",
                  retrain_table(result["retrain"]) + "\n"]
    parts.append(f"Plot: `{shown}` (best validation accuracy so far vs fraction of the default's epochs and wall "
                 "time). Peers run until they have spent both budgets (Hyperband-family peers with "
                 f"hyperband_iterations {PEER_ITERATIONS}, random/bayesian with max_trials {PEER_MAX_TRIALS}); each "
                 "search in a fresh process, tracking off. Reading: see the notes below.")
    merged = result.get("merged_from")
    if merged is not None:
        rerun = ", ".join(label(m, before.get("commit")) if m != BEFORE
                          else f"the {before.get('commit')}/now fixed-cost pair" for m in merged["rerun_methods"])
        parts.append(f"\nRerun of {rerun} only (the command below), merged into the run of {merged['date']} "
                     f"(`{merged['command']}`, git {merged['git_commit']}; its budgets), whose other rows are kept.")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--seeds", type=int, default=None, help=f"search seeds (default {FULL_SEEDS}; smoke 1)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of " + ",".join(METHODS)
                        + f"; without {DEFAULT}: rerun these at the previous result's budgets and merge")
    parser.add_argument("--before", default="1c3302d", metavar="COMMIT",
                        help=f"also measure this commit's Hyperband ({BEFORE_SEEDS} seeds, its own code in a "
                        "temporary git worktree, interleaved with this checkout's) for the fixed cost per trial; "
                        f"'' skips it (smoke: skipped); --methods {BEFORE} measures only that")
    parser.add_argument("--no-retrain", action="store_true", help="skip retraining the default's top configurations")
    child = parser.add_argument_group("one measured search (what the parent runs in a fresh process)")
    child.add_argument("--one", nargs=2, action="append", metavar=("METHOD", "SEED"))
    child.add_argument("--json-out", type=Path)
    child.add_argument("--workdir", type=Path)
    child.add_argument("--budget-epochs", type=int, default=None)
    child.add_argument("--budget-seconds", type=float, default=None)
    child.add_argument("--code-root", default=None, help="an older checkout whose pipeline package to use")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.one:
        return run_child(args)
    env = common.environment()
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - {*METHODS, BEFORE}
    if unknown or not methods:
        sys.exit(f"--methods: unknown {sorted(unknown)}; allowed: {','.join((*METHODS, BEFORE))}")
    out = common.output_path(NAME, args)
    previous: dict[str, Any] | None = None
    budgets: dict[int, dict[str, Any]] = {}
    if DEFAULT not in methods:  # rerun some methods at the budgets the default spent in the previous result
        if not out.is_file():
            sys.exit(f"--methods without {DEFAULT} needs a previous result to merge into: {out} not found")
        previous = json.loads(out.read_text())
        budgets = {b["seed"]: b for b in previous["budgets"]}
        seeds = [b["seed"] for b in previous["budgets"]][: args.seeds or None]
    else:
        seeds = list(range(args.seeds or (1 if args.smoke else FULL_SEEDS)))
    skipped: dict[str, str] = {}
    if OPTUNA in methods:
        try:
            import optuna  # noqa: F401
        except ImportError:
            skipped[OPTUNA] = "optuna not installed (pip install -e '.[bench]')"
    splits = common.digits_splits(seed=42, max_samples=200 if args.smoke else None)
    state: dict[str, Any] = {"runs": [], "before": None, "baselines": sklearn_baselines(splits)}
    peers = [m for m in methods if m not in (DEFAULT, BEFORE) and m not in skipped]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp_name:
        tmp = Path(tmp_name)
        for index, seed in enumerate(seeds):
            if DEFAULT in methods:
                state["runs"] += run_children([(DEFAULT, seed)], args, tmp, env["date"])
                default = state["runs"][-1]
                if "error" in default:
                    continue  # no budget for this seed's peers
                budgets[seed] = {"seed": seed, "epochs": len(default["epochs"]), "seconds": default["search_seconds"]}
            # each seed starts its peers at another one, so that load drifting over the run hits them alike
            order = peers[index % len(peers):] + peers[:index % len(peers)] if peers else []
            groups = [order] if args.smoke and order else [[m] for m in order]  # smoke: one process start
            for group in groups:
                state["runs"] += run_children([(m, seed) for m in group], args, tmp, env["date"],
                                              budget=budgets[seed])
            print(f"seed {seed} done ({time.perf_counter() - started:.0f} s so far)", flush=True)
            write(args, env, methods, seeds[:index + 1], budgets, skipped, state, out, previous)
        if args.before and not args.smoke and (DEFAULT in methods or BEFORE in methods):
            state["before"] = measure_before(args, tmp, env["date"])
    write(args, env, methods, seeds, budgets, skipped, state, out, previous)
    print(f"{NAME}: {time.perf_counter() - started:.0f} s in all")
    return 0


def measure_before(args: argparse.Namespace, tmp: Path, measured: str) -> dict[str, Any]:
    """``args.before``'s Hyperband and this checkout's through the same harness, one after the other per seed.

    Interleaved, so that load drifting over the run hits both sides alike (the peers' rows ran
    at other times and under other load).
    """
    runs: list[dict[str, Any]] = []
    now: list[dict[str, Any]] = []
    try:
        with worktree(args.before) as tree:
            for seed in range(BEFORE_SEEDS):
                runs += run_children([(BEFORE, seed)], args, tmp, measured, code_root=str(tree))
                now += [{**run, "method": NOW} for run in run_children([(BEFORE, seed)], args, tmp, measured)]
    except subprocess.CalledProcessError as error:
        return {"commit": args.before, "runs": [], "now_runs": [], "note": f"`--before {args.before}` not "
                f"measured: git worktree failed ({error.stderr.decode(errors='replace').strip()[:200]})"}
    return {"commit": args.before, "runs": runs, "now_runs": now,
            "note": f"Hyperband at {args.before}: that commit's own code (a temporary git worktree), make_tuner + "
                    f"run_search, full search (no budget), {BEFORE_SEEDS} seeds, on today's params.yaml space "
                    "without the augment_* keys (its schema has none), tracking off; each seed followed at once by "
                    "this checkout through the same harness (`Hyperband now` row)."}


def write(args: argparse.Namespace, env: dict[str, Any], methods: list[str], seeds: list[int],
          budgets: dict[int, dict[str, Any]], skipped: dict[str, str], state: dict[str, Any], out: Path,
          previous: dict[str, Any] | None = None) -> None:
    runs, before, merged_from = state["runs"], state["before"], None
    if previous is not None:  # keep the previous result's other runs (and its seeds not rerun yet)
        rerun = {(r["method"], r["seed"]) for r in runs}
        kept = [{**r, "measured": r.get("measured", previous["environment"]["date"])} for r in previous["runs"]
                if (r["method"], r["seed"]) not in rerun]
        order = {m: i for i, m in enumerate(METHODS)}
        runs = sorted(kept + runs, key=lambda r: (r["seed"], order[r["method"]]))
        seeds = list(previous["seeds"])
        before = before if before is not None else previous.get("before")
        # a method skipped before (optuna not installed) has no runs but still a summary row: keep it, so a
        # merge gives the same rows with and without optuna; its skip reason stays unless it was rerun now
        skipped = {**{k: v for k, v in previous.get("skipped", {}).items() if k not in methods}, **skipped}
        previous_methods = {row["method"] for row in previous.get("summary", [])} | set(skipped)
        methods = [m for m in METHODS if any(r["method"] == m for r in runs) or m in methods or m in previous_methods]
        merged_from = {"command": previous["command"], "date": previous["environment"]["date"],
                       "git_commit": previous["environment"].get("git_commit"),
                       "rerun_methods": sorted({m for m, _ in rerun} | ({BEFORE} if state["before"] else set()))}
    by_seed = {s: budgets[s] for s in seeds if s in budgets}
    ok = [r for r in runs if "error" not in r]
    costs = {m: fixed_cost([r for r in ok if r["method"] == m]) for m in methods if m not in skipped}
    if before and before.get("runs"):
        costs[BEFORE] = fixed_cost([r for r in before["runs"] if "error" not in r])
        costs[NOW] = fixed_cost([r for r in before.get("now_runs", []) if "error" not in r])
    plot_path = out.with_suffix(".png")
    plot(ok, methods, by_seed, plot_path)
    result = {
        "seeds": seeds, "methods": methods, "budgets": list(by_seed.values()),
        "fractions": [fraction_label(n, d) for n, d in FRACTIONS],
        # a merge keeps the seeds of the run it merges into, and so its reducedness
        "reduced": bool(previous.get("reduced")) if previous is not None
        else not args.smoke and len(seeds) < FULL_SEEDS,
        "full_command": f"python bench/search_efficiency.py --seeds {FULL_SEEDS}",
        "peer_settings": {"hyperband_iterations": PEER_ITERATIONS, "max_trials": PEER_MAX_TRIALS,
                          "time_cap_x_default": TIME_CAP},
        "skipped": skipped, "summary": summarize(ok, methods, by_seed), "fixed_cost": costs,
        "baselines": state["baselines"] if previous is None else previous.get("baselines", state["baselines"]),
        "retrain": retrain_rows(ok), "before": before, "errors": [r for r in runs if "error" in r],
        "runs": runs, "plot": str(plot_path), "merged_from": merged_from,
    }
    common.write_result(NAME, args, env, result, section(result, plot_path))


if __name__ == "__main__":
    sys.exit(main())
