"""Readings of the search suite: best validation (and its test) within a budget, spreads and ranks.

Pure functions on recorded traces, so that a hand-made trace can check them
(``tests/test_bench_smoke.py``). A trace is a run's ``epochs``: one dict per epoch spent,
in order, with ``val`` (validation accuracy), ``test`` (that epoch's model on the test split)
and ``t_end`` (seconds of search when the epoch ended).
"""

from __future__ import annotations

import statistics
from typing import Any

FRACTIONS = ((1, 3), (2, 3), (1, 1))
AXES = ("epochs", "seconds")
METRICS = ("val", "test")


def fraction_label(num: int, den: int) -> str:
    return "full" if num == den else f"{num}/{den}"


LABELS = tuple(fraction_label(n, d) for n, d in FRACTIONS)


def best_within(epochs: list[dict[str, Any]], *, epoch_budget: int | None = None,
                seconds: float | None = None) -> dict[str, Any] | None:
    """The best-validation epoch among the first ``epoch_budget`` epochs, or those ended by ``seconds``.

    Ties keep the earliest epoch (what a search that stopped there would have reported). None
    when no epoch fits the budget.
    """
    if epoch_budget is not None:
        seen = epochs[:epoch_budget]
    else:
        seen = [e for e in epochs if e["t_end"] <= (seconds or 0.0) + 1e-9]
    return max(seen, key=lambda e: e["val"]) if seen else None


def run_readings(epochs: list[dict[str, Any]], budget_epochs: int, budget_seconds: float) -> dict[str, Any]:
    """``{axis: {fraction: {"val", "test"} or None}}`` at 1/3, 2/3 and all of each budget.

    A fraction of the epoch budget is rounded to whole epochs (at least one).
    """
    out: dict[str, Any] = {}
    for axis in AXES:
        out[axis] = {}
        for num, den in FRACTIONS:
            if axis == "epochs":
                best = best_within(epochs, epoch_budget=max(1, round(budget_epochs * num / den)))
            else:
                best = best_within(epochs, seconds=budget_seconds * num / den)
            out[axis][fraction_label(num, den)] = None if best is None else {"val": best["val"], "test": best["test"]}
    return out


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values)}


def reading_value(reading: dict[str, Any] | None, metric: str) -> float:
    """A reading's value; no epoch within the budget yet counts as 0 (nothing found)."""
    return 0.0 if reading is None else float(reading[metric])


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest score; ties share the mean of their ranks."""
    ordered = sorted(scores, key=lambda m: -scores[m])
    out: dict[str, float] = {}
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and scores[ordered[j + 1]] == scores[ordered[i]]:
            j += 1
        for k in range(i, j + 1):
            out[ordered[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def task_table(runs: list[dict[str, Any]], methods: list[str]) -> dict[str, Any]:
    """Per method: spread over seeds of every reading (one task, one condition)."""
    table: dict[str, Any] = {}
    for method in methods:
        mine = [r for r in runs if r["method"] == method and "readings" in r]
        table[method] = {"seeds": sorted(r["seed"] for r in mine)}
        for axis in AXES:
            for label in LABELS:
                for metric in METRICS:
                    values = [reading_value(r["readings"][axis][label], metric) for r in mine]
                    table[method][f"{axis}/{label}/{metric}"] = spread(values)
    return table


def mean_ranks(tables: dict[str, dict[str, Any]], methods: list[str]) -> dict[str, dict[str, float]]:
    """Suite mean rank per method and reading: rank the methods' seed means within each task, average over tasks.

    ``tables`` maps task -> ``task_table``; a task where a method has no run is left out of the
    ranking for every method (only complete tasks compare).
    """
    out: dict[str, dict[str, float]] = {m: {} for m in methods}
    keys = [f"{a}/{lab}/{m}" for a in AXES for lab in LABELS for m in METRICS]
    for key in keys:
        per_task = []
        for table in tables.values():
            if all(table.get(m, {}).get(key, {}).get("n") for m in methods):
                per_task.append(ranks({m: table[m][key]["mean"] for m in methods}))
        for method in methods:
            out[method][key] = statistics.fmean(r[method] for r in per_task) if per_task else float("nan")
    return out
