"""Paired, in-process fits of the same configurations under two arms: changes smaller than the noise
between whole searches on a shared 2-core VM (BENCHMARKS.md §10).

An arm is a context manager that sets the code path up (e.g. Keras' own steps, or Keras' own batch
norm) for the fits made inside it. Each round fits every configuration once per arm, one after the
other, the order alternating by round, on the digits splits the pipeline makes (seed 42). Per fit:
CPU and wall seconds of build + fit, the first epoch's extra time over the median later epoch (the
tracing), the median later epoch and the last validation accuracy; the paired differences (first
arm minus second) are summarized with a sign count. Used by ``one_graph_steps.py`` and
``fused_batch_norm.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import common

Arm = Callable[[], contextlib.AbstractContextManager[Any]]
# The recipe and three other families / optimizers of the default space: their graphs differ in size.
VARIANTS = ({}, {"architecture": "resnet"}, {"architecture": "plain", "batch_norm": False},
            {"architecture": "separable", "optimizer": "sgd"})
KEYS = ("fit_cpu", "fit_wall", "first_extra_cpu", "steady_epoch_cpu", "steady_epoch_wall")


@contextlib.contextmanager
def swapped(module: str, name: str, value: Callable[[], Any]) -> Iterator[None]:
    """An arm: ``module.name`` replaced by ``value()`` for the fits inside (imported on entry, after
    ``run`` has quieted TensorFlow), put back on exit."""
    target = importlib.import_module(module)
    original = getattr(target, name)
    setattr(target, name, value())
    try:
        yield
    finally:
        setattr(target, name, original)


def fit_once(arm: Arm, space: Any, values: dict[str, Any], splits: dict[str, Any], epochs: int) -> dict[str, float]:
    import keras
    import numpy as np

    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.wall, self.cpu = [time.perf_counter()], [time.process_time()]

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.wall.append(time.perf_counter())
            self.cpu.append(time.process_time())

    with arm():
        keras.backend.clear_session(free_memory=False)
        gc.collect()
        (x, y), (x_val, y_val) = splits["train"], splits["validation"]
        hypermodel = CNNHyperModel(space, tuple(x.shape[1:]), 10, seed=1, total_epochs=epochs)
        hp = hyperparameters_from_values(space, values)
        wall, cpu = time.perf_counter(), time.process_time()
        model = hypermodel.build(hp)
        clock = EpochClock()
        history = hypermodel.fit(hp, model, x, y, validation_data=(x_val, y_val), epochs=epochs, callbacks=[clock])
    epoch_cpu = list(np.diff(clock.cpu))
    epoch_wall = list(np.diff(clock.wall))
    steady_cpu = statistics.median(epoch_cpu[1:])
    return {"fit_cpu": time.process_time() - cpu, "fit_wall": time.perf_counter() - wall,
            "first_extra_cpu": epoch_cpu[0] - steady_cpu, "steady_epoch_cpu": steady_cpu,
            "steady_epoch_wall": statistics.median(epoch_wall[1:]),
            "val_accuracy": float(history.history["val_accuracy"][-1])}


def summarize(pairs: list[dict[str, Any]], arms: tuple[str, str]) -> dict[str, Any]:
    first, second = arms
    out = {}
    for key in KEYS:
        diffs = [p[first][key] - p[second][key] for p in pairs]
        out[key] = {f"{second}_median": statistics.median(p[second][key] for p in pairs),
                    f"{first}_median": statistics.median(p[first][key] for p in pairs),
                    "paired_difference_median": statistics.median(diffs),
                    "paired_difference_mean": statistics.fmean(diffs),
                    f"{first}_lower": sum(d < 0 for d in diffs), "pairs": len(diffs)}
    return out


def run(name: str, description: str, arms: dict[str, Arm]) -> dict[str, Any]:
    """Parse the common flags, fit the pairs, print and write the result; returns the payload written."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=6, help="pairs per configuration (default 6)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per fit (default 5)")
    args = parser.parse_args()
    common.quiet_tensorflow()
    rounds, epochs, variants = (1, 2, VARIANTS[:2]) if args.smoke else (args.rounds, args.epochs, VARIANTS)
    env = common.environment()
    labels = tuple(arms)
    assert len(labels) == 2, "two arms"

    from pipeline.config import load_params

    params = load_params(common.REPO / "params.yaml")
    recipe = dict(params.tune.initial_points[0])
    recipe.update(reg_strength=1e-4, weight_decay=1e-4)  # keys the recipe leaves to the search
    splits = common.digits_splits()
    configurations = [{**recipe, **variant} for variant in variants]
    for values in configurations:  # warm-up: TensorFlow's one-off costs out of the first pair
        for label in labels:
            fit_once(arms[label], params.search_space, values, splits, epochs)
    pairs = []
    for index in range(rounds):
        for values in configurations:
            order = labels if index % 2 == 0 else labels[::-1]
            fits = {label: fit_once(arms[label], params.search_space, values, splits, epochs) for label in order}
            pairs.append({"round": index, "architecture": values["architecture"], "first": order[0], **fits})
            print(f"round {index} {values['architecture']}: " + ", ".join(
                f"{label} fit {fits[label]['fit_cpu']:.3f} s CPU" for label in labels), flush=True)
    first, second = labels
    same = all(p[first]["val_accuracy"] == p[second]["val_accuracy"] for p in pairs)
    gap = max(abs(p[first]["val_accuracy"] - p[second]["val_accuracy"]) for p in pairs)
    summary = summarize(pairs, labels)
    for key, row in summary.items():
        print(f"{key}: {second} {row[f'{second}_median']:.3f}, {first} {row[f'{first}_median']:.3f}, paired "
              f"difference median {row['paired_difference_median']:+.3f} s (lower in {row[f'{first}_lower']} of "
              f"{row['pairs']})")
    print(f"same validation accuracy in every pair: {same} (largest gap {gap:.4f})")
    payload = {"commit": common.git_commit(), "epochs": epochs, "rounds": rounds, "configurations": configurations,
               "same_val_accuracy": same, "largest_val_accuracy_gap": gap, "summary": summary, "pairs": pairs}
    common.write_result(name, args, env, payload)
    return payload
