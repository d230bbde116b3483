"""Which hyperparameters mattered: random-forest permutation importance with bootstrap intervals.

Each bootstrap resample of the finished trials fits a scikit-learn random forest
(hyperparameters -> objective) and measures, on the trials left out of that resample,
how much the error grows when one hyperparameter's column is shuffled. The spread over
resamples is the uncertainty; with few trials it is wide and the ranking says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.report.load import Trials
from pipeline.report.stats import NOT_SET, Dimension, main_effect_share

MIN_TRIALS = 6  # below this many finished trials no importance is computed
TRIALS_PER_FEATURE = 3  # fewer finished trials per searched dimension: the ranking is flagged uncertain
INTERVAL = (10, 90)  # percentiles of the bootstrap distribution shown as the interval


@dataclass
class Importance:
    name: str
    mean: float  # growth of the forest's held-out squared error when the column is shuffled, / variance
    low: float
    high: float
    main_effect: float  # eta squared of the per-choice groups


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
            codes = {label: i for i, label in enumerate(lb for lb in dim.order if lb != NOT_SET)}
            columns[dim.name] = dim.labels.loc[rows].map(codes).fillna(-1).astype(float)
    return pd.DataFrame(columns, index=rows)


def rank(trials: Trials, dims: list[Dimension], bootstraps: int = 30, seed: int = 0,
         n_estimators: int = 60, repeats: int = 3) -> ImportanceResult:
    from sklearn.ensemble import RandomForestRegressor  # imported here: the module loads fast without it

    finished = trials.finished
    n = len(finished)
    varying = [d for d in dims if d.usable and d.labels.loc[finished.index].nunique() > 1]
    if n < MIN_TRIALS:
        return ImportanceResult(n_trials=n, reason=f"not enough trials: {n} finished, at least {MIN_TRIALS} needed")
    if not varying:
        return ImportanceResult(n_trials=n, reason="no searched hyperparameter took more than one value")
    y = finished["score"].to_numpy(float)
    if np.var(y) == 0:
        return ImportanceResult(n_trials=n, reason=f"every finished trial scored the same ({y[0]:.4g})")

    x = encode(varying, finished.index).to_numpy(float)
    rng = np.random.default_rng(seed)
    samples = np.full((bootstraps, len(varying)), np.nan)
    for b in range(bootstraps):
        picked = rng.integers(0, n, n)
        held_out = np.setdiff1d(np.arange(n), picked)
        if len(held_out) < 3:
            held_out = np.arange(n)  # tiny tables: measure on all trials rather than on none
        forest = RandomForestRegressor(n_estimators=n_estimators, min_samples_leaf=1, random_state=seed + b)
        forest.fit(x[picked], y[picked])
        x_eval, y_eval = x[held_out], y[held_out]
        scale = float(np.var(y_eval)) or float(np.var(y))
        base = float(np.mean((forest.predict(x_eval) - y_eval) ** 2))
        # every shuffled copy goes through one predict call: far faster than one call per copy
        copies = []
        for j in range(len(varying)):
            for _ in range(repeats):
                shuffled = x_eval.copy()
                shuffled[:, j] = rng.permutation(shuffled[:, j])
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
            main_effect=main_effect_share(finished["score"], dim.labels.loc[finished.index]),
        ))
    ranking.sort(key=lambda item: item.mean, reverse=True)

    reasons = []
    if n < TRIALS_PER_FEATURE * len(varying):
        reasons.append(f"only {n} finished trials for {len(varying)} searched hyperparameters")
    if len(ranking) > 1 and ranking[0].low <= ranking[1].high:
        reasons.append(f"the {INTERVAL[0]}-{INTERVAL[1]}% intervals of {ranking[0].name} and "
                       f"{ranking[1].name} overlap")
    if ranking[0].high <= 0:
        reasons.append("no hyperparameter's importance is clearly above zero")
    return ImportanceResult(ranking=ranking, n_trials=n, uncertain=bool(reasons), reason="; ".join(reasons))


def fmt_share(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"
