"""Which hyperparameters mattered: random-forest permutation importance with bootstrap intervals.

The rows are configurations (Hyperband chains), and the target is each configuration's
rank within its training budget (``significance.budget_ranks``), so that "trained for 9
epochs instead of 1" is not mistaken for a hyperparameter's effect. Each bootstrap
resample fits a scikit-learn random forest (hyperparameters -> rank) and measures, on the
configurations left out of that resample, how much the error grows when one
hyperparameter's column is shuffled. A conditional hyperparameter is shuffled only among
the configurations where it acted (elsewhere it holds a sentinel the forest can split
off), so it is not credited with its parent's effect. The spread over resamples is the
uncertainty; with few configurations it is wide and the ranking says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.report.chains import BUDGET
from pipeline.report.load import Trials
from pipeline.report.significance import budget_ranks
from pipeline.report.stats import EXCLUDED, Dimension, main_effect_share

MIN_TRIALS = 6  # below this many finished configurations no importance is computed
TRIALS_PER_FEATURE = 3  # fewer finished configurations per searched dimension: the ranking is flagged uncertain
INTERVAL = (10, 90)  # percentiles of the bootstrap distribution shown as the interval


@dataclass
class Importance:
    name: str
    mean: float  # growth of the forest's held-out squared error when the column is shuffled, / rank variance
    low: float
    high: float
    main_effect: float  # eta squared of the per-choice groups, over the configurations where it acted


@dataclass
class ImportanceResult:
    ranking: list[Importance] = field(default_factory=list)
    n_trials: int = 0
    uncertain: bool = True
    reason: str = ""  # why there is no ranking, or why it is uncertain


def encode(dims: list[Dimension], rows: pd.Index) -> pd.DataFrame:
    """One numeric column per dimension: log10 for log ranges, ordinal codes for choices."""
    columns = {}
    for dim in dims:
        if dim.numeric is not None:
            values = dim.numeric.loc[rows].astype(float)
            if dim.log:
                values = np.log10(values.where(values > 0))
            columns[dim.name] = values.fillna(values.min() - 1 if values.notna().any() else -1.0)
        else:
            codes = {label: i for i, label in enumerate(lb for lb in dim.order if lb not in EXCLUDED)}
            columns[dim.name] = dim.labels.loc[rows].map(codes).fillna(-1).astype(float)
    return pd.DataFrame(columns, index=rows)


def _values(dim: Dimension, rows: pd.Index) -> pd.Series:
    """The labels of ``dim`` at ``rows`` where it has a value (set and active)."""
    labels = dim.labels.loc[rows]
    return labels[dim.values_mask.loc[rows]]


def rank(trials: Trials, dims: list[Dimension], bootstraps: int = 30, seed: int = 0,
         n_estimators: int = 60, repeats: int = 3) -> ImportanceResult:
    from sklearn.ensemble import RandomForestRegressor  # imported here: the module loads fast without it

    finished = trials.finished
    n = len(finished)
    if n < MIN_TRIALS:
        return ImportanceResult(n_trials=n, reason=f"not enough configurations: {n} finished, at least "
                                f"{MIN_TRIALS} needed")
    varying = [d for d in dims if d.usable and _values(d, finished.index).nunique() > 1]
    if not varying:
        return ImportanceResult(n_trials=n, reason="no searched hyperparameter took more than one value")
    budgets = finished[BUDGET] if BUDGET in finished.columns else pd.Series(np.nan, index=finished.index)
    target = budget_ranks(finished["score"], budgets, trials.maximize)
    y = target.to_numpy(float)
    if np.var(y) == 0:
        return ImportanceResult(n_trials=n, reason="every finished configuration ranks the same within its budget")

    x = encode(varying, finished.index).to_numpy(float)
    active = np.column_stack([d.values_mask.loc[finished.index].to_numpy(bool) for d in varying])
    rng = np.random.default_rng(seed)
    samples = np.full((bootstraps, len(varying)), np.nan)
    for b in range(bootstraps):
        picked = rng.integers(0, n, n)
        held_out = np.setdiff1d(np.arange(n), picked)
        if len(held_out) < 3:
            held_out = np.arange(n)  # tiny tables: measure on all configurations rather than on none
        forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1, random_state=seed + b)
        forest.fit(x[picked], y[picked])
        x_eval, y_eval = x[held_out], y[held_out]
        scale = float(np.var(y_eval)) or float(np.var(y))
        base = float(np.mean((forest.predict(x_eval) - y_eval) ** 2))
        # every shuffled copy goes through one predict call: far faster than one call per copy
        copies = []
        for j in range(len(varying)):
            acting = np.flatnonzero(active[held_out, j])
            for _ in range(repeats):
                shuffled = x_eval.copy()
                shuffled[acting, j] = rng.permutation(shuffled[acting, j])
                copies.append(shuffled)
        predicted = forest.predict(np.concatenate(copies)).reshape(len(varying), repeats, len(held_out))
        errors = ((predicted - y_eval) ** 2).mean(axis=2).mean(axis=1)
        samples[b] = (errors - base) / scale

    ranking = []
    for j, dim in enumerate(varying):
        column = samples[:, j]
        ranking.append(Importance(
            name=dim.name,
            mean=float(np.nanmean(column)),
            low=float(np.nanpercentile(column, INTERVAL[0])),
            high=float(np.nanpercentile(column, INTERVAL[1])),
            main_effect=main_effect_share(target, dim.labels.loc[finished.index].where(dim.values_mask)),
        ))
    ranking.sort(key=lambda item: item.mean, reverse=True)

    reasons = []
    if n < TRIALS_PER_FEATURE * len(varying):
        reasons.append(f"only {n} finished configurations for {len(varying)} searched hyperparameters")
    if len(ranking) > 1 and ranking[0].low <= ranking[1].high:
        reasons.append(f"the {INTERVAL[0]}-{INTERVAL[1]}% intervals of {ranking[0].name} and "
                       f"{ranking[1].name} overlap")
    if ranking[0].high <= 0:
        reasons.append("no hyperparameter's importance is clearly above zero")
    return ImportanceResult(ranking=ranking, n_trials=n, uncertain=bool(reasons), reason="; ".join(reasons))


def fmt_share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
