"""The learning rate as a nuisance hyperparameter: each side of a comparison at its own best rate.

Changing the optimizer, the architecture, the initialization or the regularization changes the
best learning rate too; comparing a variant at the best configuration's rate measures "the
variant at a rate chosen for something else" (SGD at AdamW's 0.003 is far below SGD's usual
range). So, as Google's deep-learning tuning playbook does with nuisance hyperparameters, every
configuration of an ablation, the best one included, is trained at each rate of a small
log-spaced grid around its optimizer's usual range (``ablate.learning_rates``: one grid for the
adaptive optimizers, one for SGD and its momentum forms) with ``ablate.rate_seeds`` selection
seeds, and runs its verdict seeds at the rate with the best mean validation accuracy.

The selection seeds are not the verdict seeds (``selection_seeds``): the runs that picked a rate
are not re-used to judge it, so the winner's luck in the selection does not flow into the
verdict. Plain Python (no TensorFlow).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.ablation.plan import METRIC, RATE, Variant, ablation_seeds

ADAPTIVE = frozenset({"adam", "adamw", "rmsprop"})  # the others (sgd, momentum, nesterov) use the "sgd" grid
# Selection seeds start this far from the project's seed, so they never coincide with verdict seeds.
SELECTION_OFFSET = 100_000


def family(optimizer: Any) -> str:
    """``adaptive`` or ``sgd``: the key of ``ablate.learning_rates`` whose grid this optimizer uses."""
    return "adaptive" if optimizer in ADAPTIVE else "sgd"


def grid_for(values: Mapping[str, Any], grids: Mapping[str, Sequence[float]]) -> tuple[float, ...]:
    return tuple(float(rate) for rate in grids[family(values.get("optimizer"))])


def selection_seeds(seed: int, count: int) -> list[int]:
    return ablation_seeds(seed + SELECTION_OFFSET, count)


def rate_variants(variants: Iterable[Variant], grids: Mapping[str, Sequence[float]]) -> list[Variant]:
    """Every variant at every rate of its optimizer's grid (phase ``rate``)."""
    return [variant.at_rate(rate, RATE) for variant in variants for rate in grid_for(variant.values, grids)]


def choose_rates(variants: Sequence[Variant], runs: Sequence[Mapping[str, Any]],
                 grids: Mapping[str, Sequence[float]], own_rate: float) -> dict[str, dict[str, Any]]:
    """Per variant name: the grid's mean validation accuracy per rate, the chosen rate and whether it
    lies on the grid's edge (the best rate may then lie beyond it).

    Ties (equal means: a configuration at chance scores the same at every rate) go to the rate
    nearest, on a log scale, to the best configuration's tuned ``own_rate``. A variant with no
    finished selection run keeps ``own_rate``.
    """
    scores: dict[tuple[str, float], list[float]] = {}
    for run in runs:
        if run.get("phase") == RATE and run.get("status", "FINISHED") == "FINISHED" and run.get(METRIC) is not None:
            key = (run["variant"].split("@lr=")[0], float(run["learning_rate"]))
            scores.setdefault(key, []).append(float(run[METRIC]))
    chosen = {}
    for variant in variants:
        grid = grid_for(variant.values, grids)
        means = {rate: sum(s) / len(s) for rate in grid if (s := scores.get((variant.base_name, rate)))}
        if not means:
            chosen[variant.base_name] = {"grid": list(grid), "scores": {}, "rate": own_rate, "edge": False,
                                         "note": "no finished selection run: the best configuration's rate"}
            continue
        rate = max(means, key=lambda r: (round(means[r], 10), -abs(math.log(r / own_rate))))
        chosen[variant.base_name] = {"grid": list(grid), "scores": {f"{r:g}": m for r, m in means.items()},
                                     "rate": rate, "edge": len(grid) > 1 and rate in (min(grid), max(grid))}
    return chosen


__all__ = ["ADAPTIVE", "SELECTION_OFFSET", "choose_rates", "family", "grid_for", "rate_variants", "selection_seeds"]
