"""One row per configuration: Hyperband continuations collapsed into their chain.

Hyperband continues a promising trial in the next round as a new trial with the same
hyperparameters (``continued_from``). Counting every round as a trial counts the same
configuration several times, and more often the better it did: a choice looks tried
three times when it was tried once. A chain is a root trial and every trial continuing
it; it is kept as its final, largest-budget row (its outcome after the most training
Hyperband gave it), with its budget in epochs.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from pipeline.report.load import Trials

MAX_DEPTH = 100  # continuation chains are a few rounds long; this only guards against cycles
CHAIN = "chain"  # root trial id of the row's chain
CHAIN_TRIALS = "chain_trials"  # the chain's trial ids in order, "0006>0009>0012"
CHAIN_LENGTH = "chain_length"
BUDGET = "budget"  # epochs the configuration was given (target_epochs of its final row)


def root_of(trial_id: str, parents: dict[str, str]) -> str:
    """The first trial of ``trial_id``'s chain (a parent missing from the table still names the chain)."""
    current, seen = trial_id, {trial_id}
    while current in parents and len(seen) < MAX_DEPTH:
        parent = parents[current]
        if parent in seen:
            break
        seen.add(parent)
        current = parent
    return current


def budgets(table: pd.DataFrame) -> pd.Series:
    """Each row's training budget in epochs: ``target_epochs``, else the epochs it reached, else NaN."""
    budget = pd.Series(np.nan, index=table.index, dtype=float)
    if "target_epochs" in table.columns:
        budget = pd.to_numeric(table["target_epochs"], errors="coerce").astype(float)
    if "epochs_trained" in table.columns:
        start = pd.to_numeric(table["initial_epoch"], errors="coerce").fillna(0) if "initial_epoch" in table \
            else 0
        reached = start + pd.to_numeric(table["epochs_trained"], errors="coerce")
        budget = budget.fillna(reached)
    return budget


def collapse(trials: Trials) -> Trials:
    """The same ``Trials`` with one row per chain: the final (largest-budget, latest) row of each.

    The kept rows keep their index in the trials table, so per-row series built on one table
    select on the other. A chain whose final round failed counts as failed: that is how far
    the configuration got.
    """
    table = trials.table.copy()
    ids = table["trial_id"].astype(str)
    table[CHAIN] = [root_of(i, trials.parents) for i in ids]
    table[BUDGET] = budgets(table)
    order = [BUDGET, "round", "trial_id"] if "round" in table.columns else [BUDGET, "trial_id"]
    ordered = table.sort_values(order, kind="stable", na_position="first")
    members = ordered.groupby(CHAIN, sort=False)["trial_id"].agg(lambda s: ">".join(map(str, s)))
    sizes = ordered.groupby(CHAIN, sort=False).size()
    final = ordered.groupby(CHAIN, sort=False).tail(1).sort_index()
    final = final.assign(**{CHAIN_TRIALS: final[CHAIN].map(members), CHAIN_LENGTH: final[CHAIN].map(sizes)})
    return replace(trials, table=final)


def continued(trials: Trials) -> int:
    """How many rows of ``trials`` continue an earlier trial."""
    return sum(1 for i in trials.table["trial_id"].astype(str) if i in trials.parents)


def epochs_text(value: float) -> str:
    """"1 epoch", "9 epochs", "unknown budget"."""
    if value is None or math.isnan(value):
        return "unknown budget"
    return f"{value:g} epoch" + ("" if value == 1 else "s")


def budget_text(values: pd.Series | list[float]) -> str:
    """"1, 3 and 9 epochs" for the distinct budgets of ``values``."""
    distinct = sorted({float(v) for v in values if v is not None and not math.isnan(float(v))})
    if not distinct:
        return "unknown budgets"
    words = [f"{v:g}" for v in distinct]
    joined = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
    return f"{joined} epoch{'s' if len(words) > 1 or distinct[0] != 1 else ''}"


__all__ = ["BUDGET", "CHAIN", "CHAIN_LENGTH", "CHAIN_TRIALS", "budget_text", "budgets", "collapse", "continued",
           "epochs_text", "root_of"]
