"""Controlled ablations: the best configuration with one dimension changed at a time, over matched seeds.

A search compares configurations that differ in many dimensions at once and were trained for
different budgets, so it can show associations, not effects. Here every run trains from
scratch for the same number of epochs through the one training loop (``fit_model``), and the
best configuration and each variant run with the same seeds: seed ``s`` fixes the data order,
the dropout and augmentation draws and every layer's initial weights. The difference at a seed
is then due to the one changed value (and to what it does to training), which is what the
guide's causal questions ask.

The decision metric is validation accuracy. The test split stays out of every decision, so
the evaluate stage's test accuracy remains an unbiased estimate; it is recorded here for
information only. Gap = training accuracy (inference mode, evaluated after training) minus
validation accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from pipeline.ablation.plan import (
    BASELINE,
    BEST_NAME,
    GRAPH_FREE_KEYS,
    METRIC,
    RATE,
    SCORE_COLUMNS,
    SeedPlan,
    Variant,
    ablation_seeds,
    graph_key,
    plan_variants,
    seeds_of,
    unique_variants,
    with_duplicates,
)
from pipeline.hparams import Fixed
from pipeline.model.final import validation_score
from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
from pipeline.model.training import evaluation_batches, fit_model

# The runs whose train-validation gap a verdict uses (the best configuration's too); the others skip
# the pass over the training set.
GAP_DIMENSIONS = (None, "regularizer", "dropout")


class AblationTracker(Protocol):
    """What the ablation reports to a run store (``pipeline.tracking.ablation_run.AblationRun``)."""

    def start_run(self, variant: Variant, seed: int) -> str | None: ...

    def log_epoch(self, run_id: str | None, epoch: int, logs: Mapping[str, float]) -> None: ...

    def end_run(self, run_id: str | None, metrics: Mapping[str, float], status: str) -> None: ...


@dataclass(frozen=True)
class Splits:
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


Builder = Callable[[Variant, int], keras.Model]


def model_builder(space: Any, input_shape: Sequence[int], num_classes: int, epochs: int,
                  precision: str = "float32") -> Builder:
    """``build(variant, seed)``: a compiled model, built as the search builds its trials (``precision``:
    a Keras dtype policy, ``pipeline.model.precision.resolve_precision``).

    The variant's changed keys are fixed to their values in a copy of the space, so a value outside the
    search's choices (``sgd`` when only adaptive optimizers were searched) builds the same way.
    """

    def build(variant: Variant, seed: int) -> keras.Model:
        run_space = space.model_copy(update={key: Fixed(value) for key, value in variant.changes.items()})
        hypermodel = CNNHyperModel(space=run_space, input_shape=tuple(input_shape), num_classes=num_classes,
                                   seed=seed, total_epochs=epochs, precision=precision)
        return hypermodel.build(hyperparameters_from_values(run_space, variant.values))

    return build


class _EpochLog(keras.callbacks.Callback):
    def __init__(self, tracker: AblationTracker | None, run_id: str | None) -> None:
        super().__init__()
        self.tracker, self.run_id = tracker, run_id

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.tracker is not None:
            self.tracker.log_epoch(self.run_id, epoch + 1, {k: float(v) for k, v in (logs or {}).items()})


def reset_to(model: keras.Model, fresh: keras.Model) -> keras.Model:
    """``model`` (already trained, its train step traced) put back into the state of ``fresh`` (just built).

    Tracing the train and test steps costs more than a few epochs of training a small network;
    the runs of one variant share one model and so one trace. Weights (batch-norm statistics
    included) and optimizer variables (iteration count, moments) are copied from ``fresh``, built
    with the run's seed; the dropout and augmentation state is set per epoch by ``fit_model``.
    So a reused model trains exactly as ``fresh`` would (tests/test_ablate.py checks it).
    """
    if model is fresh:
        return model
    model.set_weights(fresh.get_weights())
    if model.optimizer.built:
        fresh.optimizer.build(fresh.trainable_variables)
        for target, source in zip(model.optimizer.variables, fresh.optimizer.variables, strict=True):
            target.assign(source)
    return model


def run_one(variant: Variant, seed: int, model: keras.Model, data: Splits, epochs: int,
            tracker: AblationTracker | None = None) -> dict[str, Any]:
    """Train ``model`` (``variant`` as built with ``seed``) for ``epochs``; its record for results.json."""
    started = time.monotonic()
    run_id = tracker.start_run(variant, seed) if tracker is not None else None
    status, scores = "FAILED", {}
    try:
        # No validation pass per epoch: it costs a quarter of an epoch here, and only the final
        # weights are compared (as the train stage keeps them).
        fit_model(model, variant.values, data.x, data.y, validation_data=None, epochs=epochs, seed=seed,
                  callbacks=[_EpochLog(tracker, run_id)])
        val_loss, val_accuracy = model.evaluate(evaluation_batches(data.x_val, data.y_val), verbose=0)[:2]
        scores = {"val_accuracy": float(val_accuracy), "val_loss": float(val_loss),
                  "test_accuracy": validation_score(model, data.x_test, data.y_test, "val_accuracy")}
        if variant.dimension in GAP_DIMENSIONS and variant.phase != RATE:
            # evaluated, not the last epoch's running mean: no dropout or augmentation in it
            scores["train_accuracy"] = validation_score(model, data.x, data.y, "val_accuracy")
            scores["gap"] = scores["train_accuracy"] - scores["val_accuracy"]
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if tracker is not None:
            tracker.end_run(run_id, scores if status == "FINISHED" else {}, status)
    return {"variant": variant.name, "dimension": variant.dimension, "value": variant.value, "phase": variant.phase,
            "learning_rate": variant.values.get("learning_rate"), "seed": seed, "status": status,
            "run_id": run_id, "seconds": round(time.monotonic() - started, 2), **scores}


class Trainer:
    """Trains runs in this process, keeping one traced model per graph across calls (an ablation's rounds).

    Runs of the same graph share one model (``reset_to``): the seeds of a variant, variants that differ
    only in ``GRAPH_FREE_KEYS`` (an initializer, a schedule, the learning rate: so a configuration's
    rate-selection runs and its verdict runs), in every round: tracing is paid once per graph, not per
    run or round. ``close`` drops the models (TensorFlow keeps ~10 MB per model built).
    """

    def __init__(self, build_for: Callable[[int], Builder], data: Splits,
                 tracker: AblationTracker | None = None) -> None:
        self.build_for, self.data, self.tracker = build_for, data, tracker
        self.models: dict[str, keras.Model] = {}  # by graph_key; a handful of small models

    def run(self, variants: Sequence[Variant], seeds: SeedPlan, epochs: int,
            on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Every variant at its seeds (``seeds``: all the same, or by variant name), one after the other.

        A variant whose configuration equals an earlier one's is not trained again (``unique_variants``):
        its records are the earlier ones', marked ``same_as``.
        """
        unique, aliases = unique_variants(variants)
        build = self.build_for(epochs)
        runs: list[dict[str, Any]] = []
        for variant in unique:
            graph = graph_key(variant.values)
            for seed in seeds_of(seeds, variant.name):
                # Python, NumPy and TensorFlow state as the train stage sets it: a run depends on its seed
                # alone, not on the runs before it in this process.
                keras.utils.set_random_seed(seed)
                fresh = build(variant, seed)
                self.models[graph] = reset_to(self.models[graph], fresh) if graph in self.models else fresh
                runs.append(run_one(variant, seed, self.models[graph], self.data, epochs, self.tracker))
                if on_run is not None:
                    on_run(runs[-1])
        return with_duplicates(variants, aliases, runs, seeds, on_copy=on_run)

    def close(self) -> None:
        self.models.clear()
        keras.backend.clear_session()

    release = close  # no more rounds (a ``WorkerPool``'s word for it)


__all__ = ["BASELINE", "BEST_NAME", "GRAPH_FREE_KEYS", "METRIC", "RATE", "SCORE_COLUMNS", "AblationTracker", "Splits",
           "Trainer", "Variant", "ablation_seeds", "graph_key", "model_builder", "plan_variants", "reset_to",
           "run_one"]
