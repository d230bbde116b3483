"""Per-dimension summaries: which values were tried, how often they failed, how they scored.

A searched ``Choice`` is summarized per choice (choices never tried are listed with 0
configurations); a ``Range`` on a small grid (``step``) per grid value; a continuous
``Range`` per bin (decades for a log range spanning two or more of them, else equal-width
bins). A conditional hyperparameter (``pipeline.report.conditions``) is labelled
``INACTIVE`` in the rows where the model never read it, so no statistic counts those rows.
The tables are meant for one row per configuration (``chains.collapse``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.hparams import Choice, Fixed, HParam, Range
from pipeline.report.chains import BUDGET, CHAIN_TRIALS, budget_text
from pipeline.report.conditions import condition, describe_condition
from pipeline.report.load import HP_PREFIX, Trials
from pipeline.report.significance import budget_ranks

NOT_SET = "(not set)"  # no value recorded in the trial
INACTIVE = "(inactive)"  # recorded, but the configuration's other choices made the model ignore it
EXCLUDED = frozenset({NOT_SET, INACTIVE})  # labels that are no value of the hyperparameter
MAX_GRID_VALUES = 10  # a stepped range with at most this many values is summarized per value
LINEAR_BINS = 4


def value_label(value: Any) -> str:
    """One spelling per value whether it came from params.yaml or back from a CSV."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_SET
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("true", "false"):
            return text.lower()
        try:
            return f"{float(text):g}" if text else NOT_SET
        except ValueError:
            return text
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{float(value):g}"
    return str(value)


@dataclass
class Dimension:
    """One search-space key and how its trials are grouped."""

    name: str
    spec: HParam
    present: bool  # has an ``hp.<name>`` column in trials.csv
    labels: pd.Series | None = None  # per row of the trials table: the group label
    order: list[str] = field(default_factory=list)  # group labels in display order
    numeric: pd.Series | None = None  # per row: the numeric value (ranges only), for plots/importance
    binned: bool = False  # a continuous range grouped into bins
    active: pd.Series | None = None  # per row: whether the model used the value (conditions.ACTIVE_WHEN)
    condition: str = ""  # the rule in words when conditional, e.g. "optimizer is adamw"

    @property
    def column(self) -> str:
        return HP_PREFIX + self.name

    @property
    def searched(self) -> bool:
        return self.spec.searched

    @property
    def log(self) -> bool:
        return isinstance(self.spec, Range) and self.spec.sampling == "log"

    @property
    def usable(self) -> bool:
        """Searched and recorded: the report can group trials by it."""
        return self.searched and self.present and self.labels is not None

    @property
    def n_active(self) -> int:
        return int(self.active.sum()) if self.active is not None else 0

    @property
    def values_mask(self) -> pd.Series:
        """Rows carrying a value of this hyperparameter (set and active)."""
        return ~self.labels.isin(EXCLUDED)


def _grid(spec: Range) -> list[float] | None:
    """The values a stepped range can take, or None when there are too many."""
    if spec.step is None:
        return None
    values, value = [], float(spec.min)
    while value <= spec.max * (1 + 1e-9) and len(values) <= MAX_GRID_VALUES:
        values.append(value)
        value = value * spec.step if spec.sampling == "log" else value + spec.step
    return values if len(values) <= MAX_GRID_VALUES else None


def _bin_edges(spec: Range, values: pd.Series) -> np.ndarray:
    lo = min(float(spec.min), float(values.min())) if values.size else float(spec.min)
    hi = max(float(spec.max), float(values.max())) if values.size else float(spec.max)
    if spec.sampling == "log" and lo > 0:
        llo, lhi = math.log10(lo), math.log10(hi)
        if lhi - llo >= 2:
            return 10.0 ** np.arange(math.floor(llo + 1e-9), math.ceil(lhi - 1e-9) + 1)
        return 10.0 ** np.linspace(llo, lhi, LINEAR_BINS + 1)
    return np.linspace(lo, hi, LINEAR_BINS + 1)


def _bin_labels(edges: np.ndarray) -> list[str]:
    last = len(edges) - 2
    pairs = enumerate(zip(edges[:-1], edges[1:], strict=True))
    return [f"[{a:.3g}, {b:.3g}{']' if i == last else ')'}" for i, (a, b) in pairs]


def active_rows(name: str, table: pd.DataFrame, space: Any = None) -> pd.Series:
    """Per row: whether ``name`` acted. The parent's value comes from its column, else from a fixed spec."""
    rule = condition(name)
    if rule is None:
        return pd.Series(True, index=table.index)
    parent, allowed = rule
    if HP_PREFIX + parent in table.columns:
        return table[HP_PREFIX + parent].map(value_label).isin(allowed)
    spec = getattr(space, parent, None) if space is not None else None
    if isinstance(spec, (Fixed, Choice)) and not spec.searched:
        return pd.Series(value_label(fixed_value_of(spec)) in allowed, index=table.index)
    return pd.Series(True, index=table.index)  # parent unknown: keep every row rather than guess


def fixed_value_of(spec: HParam) -> Any:
    return spec.value if isinstance(spec, Fixed) else spec.choices[0]


def describe_dimension(name: str, spec: HParam, table: pd.DataFrame, space: Any = None) -> Dimension:
    dim = Dimension(name=name, spec=spec, present=HP_PREFIX + name in table.columns)
    if condition(name) is not None:
        dim.condition = describe_condition(name)
    if not dim.present:
        return dim
    dim.active = active_rows(name, table, space)
    raw = table[dim.column]
    if isinstance(spec, Range):
        numeric = pd.to_numeric(raw, errors="coerce")
        dim.numeric = numeric
        grid = _grid(spec)
        if grid is not None:
            observed = sorted(set(numeric.dropna().tolist()) | set(grid))
            dim.order = [value_label(v) for v in observed]
            dim.labels = numeric.map(value_label)
        else:
            edges = _bin_edges(spec, numeric.dropna())
            names = _bin_labels(edges)
            codes = np.clip(np.searchsorted(edges, numeric.to_numpy(), side="right") - 1, 0, len(names) - 1)
            labels = [names[c] if np.isfinite(v) else NOT_SET for c, v in zip(codes, numeric, strict=True)]
            dim.labels = pd.Series(labels, index=table.index)
            dim.order = list(names)
            dim.binned = True
    else:
        dim.labels = raw.map(value_label)
        declared = [value_label(v) for v in spec.choices] if isinstance(spec, Choice) else [value_label(spec.value)]
        extra = [v for v in dict.fromkeys(dim.labels) if v not in declared and v != NOT_SET]
        dim.order = declared + sorted(extra)
    inactive = ~dim.active & (dim.labels != NOT_SET)
    dim.labels = dim.labels.where(~inactive, INACTIVE)
    if dim.numeric is not None:
        dim.numeric = dim.numeric.where(dim.active)
    dim.order = list(dict.fromkeys(dim.order))
    for label in (NOT_SET, INACTIVE):
        if (dim.labels == label).any():
            dim.order.append(label)
    return dim


def describe_dimensions(space: Any, table: pd.DataFrame) -> list[Dimension]:
    """Every key of ``SearchSpaceConfig``, in its declared order."""
    names = list(type(space).model_fields)
    return [describe_dimension(name, getattr(space, name), table, space) for name in names]


def fixed_value(dim: Dimension) -> Any:
    return fixed_value_of(dim.spec)


@dataclass
class ChoiceStats:
    """One value (or bin) of a dimension over configurations: counts, within-budget rank, best score."""

    label: str
    trials: int  # configurations (chains), not Hyperband rounds
    finished: int
    failed: int
    mean_rank: float  # mean within-budget rank of the finished ones, 1 = best at its budget, 0.5 = average
    best: float
    best_trial: str | None  # the chain's trials, "0006>0009>0012"
    best_budget: float
    budgets: str  # e.g. "1, 3 and 9 epochs"

    @property
    def failure_rate(self) -> float:
        return self.failed / self.trials if self.trials else math.nan


def per_choice(trials: Trials, dim: Dimension) -> list[ChoiceStats]:
    """Counts, failures, mean within-budget rank and best configuration of each group of ``dim``.

    The ranks are taken among the configurations where ``dim`` acted, so that the rows a
    conditional hyperparameter never reached do not shift them.
    """
    table = trials.table
    budgets = table[BUDGET] if BUDGET in table.columns else pd.Series(np.nan, index=table.index)
    scored = table["finished"] & dim.values_mask
    ranks = budget_ranks(table.loc[scored, "score"], budgets, trials.maximize)
    out = []
    for label in dim.order:
        if label in EXCLUDED:
            continue
        rows = table[dim.labels == label]
        done = rows[rows["finished"]]
        best_index = trials.best_index(rows)
        out.append(ChoiceStats(
            label=label,
            trials=len(rows),
            finished=len(done),
            failed=len(rows) - len(done),
            mean_rank=float(ranks.reindex(done.index).mean()) if len(done) else math.nan,
            best=trials.best_value(done["score"]),
            best_trial=None if best_index is None else str(table.at[best_index, CHAIN_TRIALS]
                                                           if CHAIN_TRIALS in table else
                                                           table.at[best_index, "trial_id"]),
            best_budget=math.nan if best_index is None else float(budgets.at[best_index]),
            budgets=budget_text(budgets.loc[rows.index]) if len(rows) else "-",
        ))
    return out


def main_effect_share(scores: pd.Series, labels: pd.Series) -> float:
    """Share of the objective's variance explained by the groups (eta squared, fANOVA's first order)."""
    frame = pd.DataFrame({"y": scores, "g": labels}).dropna()
    if len(frame) < 2 or frame["y"].var(ddof=0) == 0:
        return math.nan
    total = ((frame["y"] - frame["y"].mean()) ** 2).sum()
    means = frame.groupby("g")["y"].transform("mean")
    return float(((means - frame["y"].mean()) ** 2).sum() / total)
