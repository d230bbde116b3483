"""The searchers of the suite benchmark, each given its initial points its own library's way.

- KerasTuner tuners (``default`` = params.yaml's tuner, ``bohb``, ``hyperband``, ``bayesian``,
  ``random``) run through ``pipeline.tuning.session.tune`` and ``make_tuner``, so changes to the
  pipeline flow into the benchmark. A tuner whose oracle takes ``initial_points`` itself (BOHB)
  gets them from ``tune.initial_points``; the others get them through their oracle: the first
  configurations the oracle draws (``Oracle._random_values``, which Hyperband, RandomSearch and
  BayesianOptimization's initial design all use) are the initial points (``initial_points_oracle``).
- Optuna TPE + HyperbandPruner: ``study.enqueue_trial``.
- DEHB (``dehb``): ask/tell; each initial point replaces the configuration of one of DEHB's first
  jobs, in the job and in DEHB's config repository, as DEHB's own ``tell(replay=True)`` does.
- SMAC3 multi-fidelity (``smac``, Hyperband intensifier): ``additional_configs`` of its initial design.

Every searcher trains the same ``CNNHyperModel`` with ``fit_model`` and early stopping
(``tune.early_stopping_patience``); the log (``SuiteLog``) records every epoch and every trial's values.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search_efficiency as se  # noqa: E402

KT_METHODS = ("default", "bohb", "hyperband", "bayesian", "random")
OPTUNA = "optuna_tpe_hyperband"
DEHB = "dehb"
SMAC = "smac_hyperband"
METHODS = (*KT_METHODS, OPTUNA, DEHB, SMAC)
LABELS = {"default": "pipeline default (params.yaml tuner)", "bohb": "pipeline BOHB",
          "hyperband": "KerasTuner Hyperband",
          "bayesian": "KerasTuner BayesianOptimization", "random": "KerasTuner RandomSearch",
          OPTUNA: "Optuna TPE + HyperbandPruner", DEHB: "DEHB (dehb)", SMAC: "SMAC3 multi-fidelity (Hyperband)"}
MODULES = {OPTUNA: "optuna", DEHB: "dehb", SMAC: "smac"}  # optional extras: a missing one is reported as skipped
MANY = 1000  # trial counts / iterations: the budget stops a search, not its own limit


class SuiteLog(se.SearchLog):
    """``SearchLog`` that also keeps each trial's configuration (the values its model was built from)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trial_values: list[dict[str, Any]] = []
        self.trial_budgets: list[int | None] = []

    def begin_trial(self, values: dict[str, Any], epochs: int | None) -> None:
        self.trial_starts.append(self.clock())
        self.trial_values.append(values)
        self.trial_budgets.append(epochs)

    def result(self) -> dict[str, Any]:
        out = super().result()
        for trial, values, epochs in zip(out["trials"], self.trial_values, self.trial_budgets, strict=False):
            trial["values"], trial["target_epochs"] = values, epochs
        return out


def space_values(space: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` restricted to the searched keys of ``space`` (no ``tuner/...`` bookkeeping)."""
    from pipeline.model.space import space_items

    return {name: values[name] for name, spec in space_items(space) if spec.searched and name in values}


def recording_hypermodel(log: SuiteLog, **kwargs: Any) -> Any:
    from pipeline.model.hypermodel import CNNHyperModel

    class RecordingHyperModel(CNNHyperModel):
        def build(self, hp: Any) -> Any:
            if log.started is not None:  # KerasTuner also builds once when the tuner is made, before the search
                epochs = hp.values.get("tuner/epochs")
                log.begin_trial(space_values(self.space, hp.values), int(epochs) if epochs else None)
            return super().build(hp)

        def fit(self, hp: Any, model: Any, *args: Any, callbacks: list | None = None, **fit_kwargs: Any) -> Any:
            return super().fit(hp, model, *args, callbacks=[*(callbacks or []), log.callback()], **fit_kwargs)

    return RecordingHyperModel(**kwargs)


def complete_points(points: list[dict[str, Any]], space: Any) -> list[dict[str, Any]]:
    """Each initial point with the keys it leaves open set to the space's defaults: the same full
    configuration for every library (BOHB fills them its own way)."""
    import keras_tuner as kt

    from pipeline.model.space import declare_hyperparameters
    from pipeline.tuning.tuners import fit_initial_points

    hp = kt.HyperParameters()
    declare_hyperparameters(space, hp)
    defaults = space_values(space, dict(hp.values))
    return [{**defaults, **point} for point in fit_initial_points(points, space)]


# ------------------------------------------------------------------------------------------ KerasTuner
@contextmanager
def initial_points_oracle(points: list[dict[str, Any]]) -> Iterator[None]:
    """``make_tuner`` as the pipeline has it, with ``points`` as the first configurations of any oracle
    that does not take initial points itself.

    Hyperband, RandomSearch and BayesianOptimization draw every new configuration of their
    random phase from ``Oracle._random_values``; its first calls return the points (completed
    by ``complete_points``). The change this stands for in ``pipeline/tuning/tuners.py``: the
    same wrapping inside ``make_tuner`` for every tuner whose registry entry does not read
    ``initial_points``.
    """
    from pipeline.tuning import tuners as tuners_module

    original = tuners_module.make_tuner

    def make_tuner(tune: Any, hypermodel: Any, **kwargs: Any) -> Any:
        tuner = original(tune, hypermodel, **kwargs)
        oracle = tuner.oracle
        if points and not hasattr(oracle, "initial_points"):  # BOHB runs them itself
            queue = complete_points(points, hypermodel.space)
            draw = oracle._random_values

            def first_the_points() -> dict[str, Any] | None:
                values = draw()  # keeps the oracle's seed state moving as without the points
                if queue and values is not None:
                    values = {**values, **queue.pop(0)}
                return values

            oracle._random_values = first_the_points
        return tuner

    tuners_module.make_tuner = make_tuner  # session.tune imports it when called
    try:
        yield
    finally:
        tuners_module.make_tuner = original


def run_keras_tuner(params: Any, splits: dict, meta: dict, log: SuiteLog, out_dir: Path,
                    points: list[dict[str, Any]]) -> dict[str, Any]:
    from pipeline.model.hypermodel import resolve_fidelity
    from pipeline.tuning.session import tune

    x, y = splits["train"]
    hypermodel = recording_hypermodel(log, space=params.search_space, input_shape=x.shape[1:],
                                      num_classes=meta["num_classes"], seed=params.seed,
                                      total_epochs=params.tune.max_epochs,  # as hypermodel_from_meta
                                      fidelity=resolve_fidelity(params.tune.fidelity, len(x)))
    with initial_points_oracle(points), se.timed_run_search(log), open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet  # the tuner's per-trial lines
        try:
            return tune(params, hypermodel, (x, y, *splits["validation"]), meta["fingerprint"], tracking_uri=None,
                        hp_names=list(type(params.search_space).model_fields), out_dir=out_dir)
        finally:
            sys.stdout = stdout


# ------------------------------------------------------------------------------- outside KerasTuner
class Trainer:
    """One configuration trained for some epochs from scratch, as a search trial trains it."""

    def __init__(self, params: Any, splits: dict, meta: dict, log: SuiteLog) -> None:
        self.params, self.log = params, log
        (self.x, self.y), (self.x_val, self.y_val) = splits["train"], splits["validation"]
        self.meta = meta

    def __call__(self, values: dict[str, Any], epochs: int, extra: list | None = None) -> float:
        import keras

        from pipeline.model.hypermodel import CNNHyperModel
        from pipeline.model.space import hyperparameters_from_values

        tune = self.params.tune
        hp = hyperparameters_from_values(self.params.search_space, values)
        keras.backend.clear_session()  # as KerasTuner does before every trial
        self.log.begin_trial(space_values(self.params.search_space, values), epochs)
        hypermodel = CNNHyperModel(space=self.params.search_space, input_shape=self.x.shape[1:],
                                   num_classes=self.meta["num_classes"], seed=self.params.seed,
                                   total_epochs=tune.max_epochs)
        model = hypermodel.build(hp)
        stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=tune.early_stopping_patience)
        history = hypermodel.fit(hp, model, self.x, self.y, validation_data=(self.x_val, self.y_val), epochs=epochs,
                                 callbacks=[stop, *(extra or []), self.log.callback()])
        scores = [v for v in history.history.get("val_accuracy", []) if math.isfinite(v)]
        return max(scores) if scores else 0.0


def min_epochs(tune: Any) -> int:
    """The smallest budget of a Hyperband with ``max_epochs`` and ``factor`` (as KerasTuner's brackets)."""
    budget = float(tune.max_epochs)
    while budget / tune.factor >= 1:
        budget /= tune.factor
    return max(1, int(round(budget)))


def run_optuna(params: Any, splits: dict, meta: dict, log: SuiteLog, points: list[dict[str, Any]]) -> None:
    import keras
    import optuna

    from pipeline.model.space import space_items

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras.utils.set_random_seed(params.seed)
    tune, train = params.tune, Trainer(params, splits, meta, log)

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
        values = {name: se.suggest(trial, name, spec) for name, spec in space_items(params.search_space)}
        prune = Prune(trial)
        score = train(values, tune.max_epochs, [prune])
        if prune.pruned:
            raise optuna.TrialPruned()
        return score

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=params.seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=min_epochs(tune), max_resource=tune.max_epochs,
                                              reduction_factor=tune.factor))
    for point in complete_points(points, params.search_space):
        study.enqueue_trial(point)  # Optuna's own warm start: these run first
    log.stop_search = study.stop
    log.start()
    study.optimize(objective, n_trials=MANY, catch=(Exception,))
    log.end()


def configspace(space: Any, seed: int) -> Any:
    """The searched keys of ``space`` as a ConfigSpace: choices and stepped ranges categorical, ranges numeric."""
    from ConfigSpace import Categorical, ConfigurationSpace, Float, Integer

    from pipeline.hparams import Choice, Range
    from pipeline.model.space import space_items

    cs = ConfigurationSpace(seed=seed)
    for name, spec in space_items(space):
        if not spec.searched:
            continue
        if isinstance(spec, Choice):
            cs.add(Categorical(name, list(spec.choices)))
        elif isinstance(spec, Range):
            is_int = all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.min, spec.max))
            log = spec.sampling == "log"
            if spec.step is not None:
                cs.add(Categorical(name, grid(spec, is_int, log), ordered=True))
            elif is_int:
                cs.add(Integer(name, (int(spec.min), int(spec.max)), log=log))
            else:
                cs.add(Float(name, (float(spec.min), float(spec.max)), log=log))
        else:
            raise TypeError(f"search_space.{name}: unsupported {spec!r}")
    return cs


def grid(spec: Any, is_int: bool, log: bool) -> list[Any]:
    """A stepped range's values, as KerasTuner samples them (a log step is a multiplier)."""
    values, value = [], spec.min
    while value <= spec.max * (1 + 1e-9):
        values.append(int(value) if is_int else round(float(value), 12))
        value = value * spec.step if log else value + spec.step
    return values


def as_config(cs: Any, values: dict[str, Any]) -> Any:
    """``values`` as a configuration of ``cs``; a number a hair outside its range (a log default's
    rounding) is clipped to it."""
    from ConfigSpace import Configuration

    out = {}
    for key, value in values.items():
        if key not in cs:
            continue
        hp = cs[key]
        if hasattr(hp, "lower") and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = type(hp.lower)(min(max(value, hp.lower), hp.upper))
        out[key] = value
    return Configuration(cs, values=out)


def plain(config: Any) -> dict[str, Any]:
    """A ConfigSpace configuration as plain Python values (numpy scalars unwrapped)."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(config).items()}


def run_dehb(params: Any, splits: dict, meta: dict, log: SuiteLog, points: list[dict[str, Any]], workdir: Path) -> None:
    import keras
    import numpy as np
    from dehb import DEHB as Dehb

    keras.utils.set_random_seed(params.seed)
    tune, train = params.tune, Trainer(params, splits, meta, log)
    cs = configspace(params.search_space, params.seed)
    optimizer = Dehb(cs=cs, dimensions=len(list(cs.values())), min_fidelity=min_epochs(tune),
                     max_fidelity=tune.max_epochs, eta=tune.factor, n_workers=1, seed=params.seed,
                     output_path=str(workdir / "dehb"), save_freq="end")
    optimizer.logger.remove()  # DEHB logs every job to stderr and a file
    queue = [as_config(cs, p) for p in complete_points(points, params.search_space)]
    stop = {"now": False}
    log.stop_search = lambda: stop.update(now=True)
    log.start()
    while not stop["now"]:
        job = optimizer.ask()
        if queue:  # an initial point in place of this job's configuration, as tell(replay=True) puts one
            config = queue.pop(0)
            # the repository holds the unit-cube vector that tell() puts into DE's population; inside
            # (0, 1), because DEHB maps 0 back to a log range's bound with a rounding error below it
            vector = np.clip(optimizer.configspace_to_vector(config), 1e-9, 1 - 1e-9)
            optimizer.config_repository.configs[job["config_id"]].config = vector
            job["config"] = config
        values = plain(job["config"])
        epochs = max(1, int(round(job["fidelity"])))
        start = log.clock()
        score = train(values, epochs)
        optimizer.tell(job, {"fitness": -score, "cost": log.clock() - start})
    log.end()


def run_smac(params: Any, splits: dict, meta: dict, log: SuiteLog, points: list[dict[str, Any]], workdir: Path) -> None:
    import keras
    from smac import MultiFidelityFacade, Scenario
    from smac.intensifier.hyperband import Hyperband
    from smac.runhistory.dataclasses import TrialValue

    keras.utils.set_random_seed(params.seed)
    tune, train = params.tune, Trainer(params, splits, meta, log)
    cs = configspace(params.search_space, params.seed)
    scenario = Scenario(cs, deterministic=True, n_trials=MANY * 10, min_budget=min_epochs(tune),
                        max_budget=tune.max_epochs, seed=params.seed, output_directory=workdir / "smac")
    initial = MultiFidelityFacade.get_initial_design(
        scenario, additional_configs=[as_config(cs, p) for p in complete_points(points, params.search_space)])
    select = initial.select_configurations

    def points_first() -> list[Any]:  # SMAC appends additional_configs after its own design: run them first
        configs = select()
        given = [c for c in configs if c in initial._additional_configs]
        return given + [c for c in configs if c not in given]

    initial.select_configurations = points_first
    smac = MultiFidelityFacade(scenario, lambda config, seed=0, budget=1.0: 0.0, initial_design=initial,
                               intensifier=Hyperband(scenario, eta=tune.factor, seed=params.seed),
                               overwrite=True, logging_level=40)
    stop = {"now": False}
    log.stop_search = lambda: stop.update(now=True)
    log.start()
    while not stop["now"]:
        info = smac.ask()
        epochs = max(1, int(round(info.budget or tune.max_epochs)))
        start = log.clock()
        score = train(plain(info.config), epochs)
        smac.tell(info, TrialValue(cost=1.0 - score, time=log.clock() - start))
    log.end()


def run_searcher(method: str, params: Any, splits: dict, meta: dict, log: SuiteLog, workdir: Path,
                 points: list[dict[str, Any]]) -> None:
    """Run ``method`` (one of ``METHODS``) until ``log`` stops it; its files go under ``workdir``."""
    if method in KT_METHODS:
        run_keras_tuner(params, splits, meta, log, workdir / "out", points)
    elif method == OPTUNA:
        run_optuna(params, splits, meta, log, points)
    elif method == DEHB:
        run_dehb(params, splits, meta, log, points, workdir)
    elif method == SMAC:
        run_smac(params, splits, meta, log, points, workdir)
    else:
        raise ValueError(f"unknown method {method!r}")
