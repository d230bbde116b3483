"""What a search spends outside its epochs, read from ``trials.csv``: the fixed cost per trial and its share.

A trial's seconds are a fixed part (build, compile, graph tracing, checkpoints, logging, the
tuner's bookkeeping) plus a cost per epoch (per full-data epoch under data fidelity: ``epoch_work``).
The least-squares line of the trials' seconds against their epochs trained gives both: the
intercept is the fixed cost per trial, the slope the cost of an epoch. The setup share is the
fixed part of all trials' seconds: ``trials x intercept / sum(seconds)``, which (the residuals
of a least-squares fit with an intercept sum to zero) is also ``1 - slope x sum(epochs) / sum(seconds)``.

The trial's seconds are its whole wall time (``trial_seconds``: from the start of its run to
its end, the tuner's bookkeeping included) when ``trials.csv`` has that column; an older file
only has ``seconds``, the sum of its epochs, whose intercept is the first epoch's extra time
(graph tracing) alone. Both are ratios of the same run's own times, so they hold under load.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

SPAN_COLUMN = "trial_seconds"  # a trial's wall time, its bookkeeping included
EPOCHS_COLUMN = "seconds"  # the sum of its epochs' times (older trials.csv files have only this)


def fixed_cost(seconds: list[float], epochs: list[float], wall_seconds: float | None = None) -> dict[str, Any]:
    """Intercept (fixed seconds per trial), slope (seconds per epoch) and setup share of trials' ``seconds``.

    ``wall_seconds``, the search's whole time (``metrics.json``), adds ``setup_share_of_wall``: all
    but the epochs' cost at the fitted slope, between trials (the oracle's proposals) included.
    Trials of one length only cannot separate the two: intercept and slope are None then, and so
    are the shares. A negative intercept is no cost at all but trials whose epochs cost more than
    their length says (models of very different sizes, as on 60,000 images where one 3-epoch trial
    took 36 s and another 125 s; their setup a few seconds): the fixed cost and the shares are
    None then, with a ``note``, rather than a negative figure.
    """
    if len(seconds) != len(epochs):
        raise ValueError(f"{len(seconds)} trial times for {len(epochs)} epoch counts")
    n = len(seconds)
    out: dict[str, Any] = {"trials": n, "epochs": round(float(sum(epochs)), 3),
                           "seconds": round(float(sum(seconds)), 3), "fixed_seconds_per_trial": None,
                           "seconds_per_epoch": None, "setup_share": None, "setup_share_of_wall": None}
    if n < 2 or len(set(epochs)) < 2:
        return out
    mean_e, mean_s = sum(epochs) / n, sum(seconds) / n
    sxx = sum((e - mean_e) ** 2 for e in epochs)
    slope = sum((e - mean_e) * (s - mean_s) for e, s in zip(epochs, seconds, strict=True)) / sxx
    intercept = mean_s - slope * mean_e
    total = sum(seconds)
    if intercept < 0:
        out.update(seconds_per_epoch=round(slope, 4),
                   note=f"not measurable: the line's intercept is {intercept:.2f} s (the trials' epoch costs differ "
                        "more than their setup)")
        return out
    out.update(fixed_seconds_per_trial=round(intercept, 4), seconds_per_epoch=round(slope, 4),
               setup_share=round(n * intercept / total, 4) if total > 0 else None)
    if wall_seconds:
        out["setup_share_of_wall"] = round(1 - slope * sum(epochs) / wall_seconds, 4)
    return out


def fixed_cost_of_rows(rows: list[dict[str, Any]], wall_seconds: float | None = None) -> dict[str, Any]:
    """``fixed_cost`` of ``trials.csv``'s rows: trials that trained at least one epoch, by their wall time
    when the file has it (``basis`` says which column was used)."""
    column = SPAN_COLUMN if rows and all(_number(r.get(SPAN_COLUMN)) is not None for r in rows
                                         if _trained(r)) and any(_trained(r) for r in rows) else EPOCHS_COLUMN
    used = [r for r in rows if _trained(r) and _number(r.get(column)) is not None]
    work = epoch_work([_number(r["epochs_trained"]) for r in used], [_number(r.get("train_rows")) for r in used])
    result = fixed_cost([float(_number(r[column])) for r in used], work, wall_seconds)
    return {"basis": column, **result}


def fixed_cost_of(trials_csv: str | Path, wall_seconds: float | None = None) -> dict[str, Any]:
    """``fixed_cost_of_rows`` of a ``trials.csv`` file."""
    with Path(trials_csv).open(newline="", encoding="utf-8") as handle:
        return fixed_cost_of_rows(list(csv.DictReader(handle)), wall_seconds)


def _trained(row: dict[str, Any]) -> bool:
    epochs = _number(row.get("epochs_trained"))
    return epochs is not None and epochs > 0


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def epoch_work(epochs: list[float], rows: list[float | None]) -> list[float]:
    """Epochs in full-data epochs: under data fidelity a low rung's epoch trains on a share of the
    rows and costs that share (``train_rows``); where any trial's rows are unknown, epochs as they are."""
    known = [r for r in rows if r]
    if len(known) != len(rows) or not known:
        return [float(e) for e in epochs]
    full = max(known)
    return [e * r / full for e, r in zip(epochs, known, strict=True)]


def fixed_cost_metrics(records: list[Any], wall_seconds: float | None = None) -> dict[str, float]:
    """The tune stage's figures from its trial records (``TrialRecord``): ``fixed_seconds_per_trial`` and
    ``setup_share``, as ``fixed_cost_of`` reads them from ``trials.csv``; left out when unknown."""
    trained = [r for r in records if r.epochs_trained > 0 and r.trial_seconds is not None]
    work = epoch_work([r.epochs_trained for r in trained], [r.train_rows for r in trained])
    cost = fixed_cost([float(r.trial_seconds) for r in trained], work, wall_seconds)
    return {key: cost[key] for key in ("fixed_seconds_per_trial", "setup_share") if cost[key] is not None}
