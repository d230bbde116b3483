"""The report's pictures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Every function writes one PNG and returns its path, or None when there is nothing to draw.
Points are configurations (Hyperband chains), marked by their training budget. Lines get
distinct styles and markers as well as colors, drawn thickest first, so that lines that
coincide (a constant schedule and a step schedule before its first step) stay visible;
titles are wrapped to the figure's width.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.report.chains import BUDGET
from pipeline.report.importance import ImportanceResult
from pipeline.report.load import Trials
from pipeline.report.stats import EXCLUDED, NOT_SET, Dimension

DPI = 110
MAX_LINEAGE = 50  # Hyperband continuation chains are short; this only guards against cycles
TITLE_SIZE = 10
# no plain dotted style: learning curves draw the training metric dotted
LINESTYLES = ("-", "--", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2, 2, 2)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _title(axes: object, text: str) -> None:
    """A title wrapped to the axes' width (a long one was cut off at the figure's edge)."""
    # tight_layout later widens the axes to about 85% of the figure; an average glyph is ~0.55 em
    chars = max(20, int(0.85 * axes.figure.get_figwidth() * 72 / (TITLE_SIZE * 0.55)))
    axes.set_title("\n".join(textwrap.wrap(text, chars)), fontsize=TITLE_SIZE)


def _line_style(i: int, n: int) -> dict:
    """Style of the ``i``-th of ``n`` lines: earlier lines wider with bigger markers, so later ones on top
    leave them visible where they coincide."""
    return {"linestyle": LINESTYLES[i % len(LINESTYLES)], "marker": MARKERS[i % len(MARKERS)],
            "linewidth": max(1.0, 3.2 - 2.2 * i / max(n - 1, 1)), "markersize": max(3.5, 8.0 - 4.5 * i / max(n - 1, 1)),
            "alpha": 0.9}


def _budgets(trials: Trials) -> pd.Series:
    table = trials.table
    return table[BUDGET] if BUDGET in table.columns else pd.Series(np.nan, index=table.index)


def _budget_label(value: float) -> str:
    return "budget unknown" if math.isnan(value) else f"{value:g} epoch{'s' if value != 1 else ''}"


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def objective_by_choice(trials: Trials, dim: Dimension, path: Path, seed: int = 0) -> Path | None:
    """The objective of every finished configuration per choice, side by side per budget (own marker each).

    No box over all points: a box would pool budgets, the bias the report avoids.
    """
    finished = trials.finished
    labels = dim.labels.loc[finished.index]
    order = [label for label in dim.order if label not in EXCLUDED and (labels == label).any()]
    if not order:
        return None
    budgets = _budgets(trials).loc[finished.index].fillna(-1.0)
    levels = sorted(budgets.unique())
    failed = [int(((dim.labels == label) & ~trials.table["finished"]).sum()) for label in order]
    figure = _figure(max(4.8, 1.2 + 0.9 * len(order)), 3.9)
    axes = figure.add_subplot()
    rng = np.random.default_rng(seed)
    offsets = np.linspace(-0.25, 0.25, len(levels)) if len(levels) > 1 else np.zeros(1)
    colors = _colors(len(levels))
    for k, level in enumerate(levels):
        name = _budget_label(math.nan if level < 0 else level)
        for i, label in enumerate(order, start=1):
            values = finished.loc[(labels == label) & (budgets == level), "score"].to_numpy(float)
            if not len(values):
                continue
            x = i + offsets[k] + rng.uniform(-0.04, 0.04, len(values))
            axes.scatter(x, values, s=24, alpha=0.8, color=colors[k], marker=MARKERS[k % len(MARKERS)], zorder=3,
                         label=name)
            name = None  # one legend entry per budget
            axes.hlines(np.median(values), x.min() - 0.05, x.max() + 0.05, color=colors[k], linewidth=1.5)
    crowded = len(order) > 4 or max(len(label) for label in order) * len(order) > 36
    axes.set_xticks(range(1, len(order) + 1), [_tick(label, n) for label, n in zip(order, failed, strict=True)],
                    rotation=30 if crowded else 0, ha="right" if crowded else "center")
    axes.set_xlabel(dim.name + (" (binned)" if dim.binned else ""))
    axes.set_ylabel(trials.objective)
    if len(levels) > 1:
        axes.legend(title="budget (dash: median)", fontsize=7, title_fontsize=7, loc="best")
    scope = f" where {dim.condition}" if dim.condition else ""
    _title(axes, f"{trials.objective} per {dim.name} ({len(labels[labels.isin(order)])} finished "
                 f"configurations{scope})")
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _tick(label: str, failed: int) -> str:
    return f"{label}\n({failed} failed)" if failed else label


def lr_vs_objective(trials: Trials, lr: Dimension, schedule: Dimension | None, path: Path) -> Path | None:
    """Initial learning rate vs objective per configuration: color = schedule, marker = budget."""
    finished = trials.finished
    if lr.numeric is None:
        return None
    rates = lr.numeric.loc[finished.index]
    keep = rates.notna() & (rates > 0)
    if not keep.any():
        return None
    budgets = _budgets(trials).loc[finished.index].fillna(-1.0)
    levels = sorted(budgets[keep].unique())
    figure = _figure(6.6, 4.3)
    axes = figure.add_subplot()
    if schedule is not None and schedule.usable:
        groups = schedule.labels.loc[finished.index]
        names = [label for label in schedule.order if ((groups == label) & keep).any()]
    else:
        groups, names = pd.Series("all", index=finished.index), ["all"]
    colors = dict(zip(names, _colors(len(names)), strict=True))
    for k, level in enumerate(levels):
        for name in names:
            mask = keep & (groups == name) & (budgets == level)
            if mask.any():
                axes.scatter(rates[mask], finished.loc[mask, "score"], s=30, alpha=0.8, color=colors[name],
                             marker=MARKERS[k % len(MARKERS)], edgecolors="black", linewidths=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[n], marker="o", linestyle="", label=n) for n in names if n != "all"]
    if len(levels) > 1:
        handles += [Line2D([], [], color="gray", marker=MARKERS[k % len(MARKERS)], linestyle="",
                           label=_budget_label(math.nan if v < 0 else v)) for k, v in enumerate(levels)]
    if handles:
        axes.legend(handles=handles, fontsize=7, loc="best")
    axes.set_xscale("log")
    axes.set_xlabel("initial learning rate")
    axes.set_ylabel(trials.objective)
    _title(axes, f"Learning rate vs {trials.objective} ({int(keep.sum())} configurations; "
                 "color: schedule, marker: budget)")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def lineage_history(history: pd.DataFrame, trials: Trials, trial_id: str) -> pd.DataFrame:
    """A trial's epochs preceded by those of the trials it continues (Hyperband rounds)."""
    parts, seen, current = [], set(), str(trial_id)
    while current and current not in seen and len(seen) < MAX_LINEAGE:
        seen.add(current)
        own = history[history["trial_id"] == current]
        if parts and not own.empty:
            own = own[own["epoch"] < parts[-1]["epoch"].min()]
        parts.append(own)
        current = trials.parents.get(current, "")
    frame = pd.concat(parts[::-1]) if parts else history.iloc[0:0]
    return frame.sort_values("epoch")


def learning_curves(history: pd.DataFrame | None, trials: Trials, curves: list[tuple[str, str]], path: Path,
                    title: str) -> Path | None:
    """Validation and training curves of the objective's metric; ``curves`` is [(trial_id, label)]."""
    if history is None or not curves:
        return None
    metric = trials.objective if trials.objective in history.columns else None
    if metric is None:
        return None
    train_metric = metric.removeprefix("val_")
    figure = _figure(6.8, 4.4)
    axes = figure.add_subplot()
    drawn = 0
    for i, ((trial_id, label), color) in enumerate(zip(curves, _colors(len(curves)), strict=True)):
        frame = lineage_history(history, trials, trial_id)
        if frame.empty:
            continue
        axes.plot(frame["epoch"], frame[metric], color=color, label=label, **_line_style(i, len(curves)))
        if train_metric in frame.columns and train_metric != metric:
            axes.plot(frame["epoch"], frame[train_metric], color=color, linestyle=":", linewidth=1, alpha=0.6)
        drawn += 1
    if not drawn:
        return None
    axes.set_xlabel("epoch (absolute; Hyperband rounds joined)")
    axes.set_ylabel(metric + (f" (dotted: {train_metric})" if train_metric != metric else ""))
    _title(axes, title)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def importance_bars(result: ImportanceResult, path: Path) -> Path | None:
    if not result.ranking:
        return None
    ranking = result.ranking[::-1]
    means = np.array([item.mean for item in ranking])
    lower = means - np.array([item.low for item in ranking])
    upper = np.array([item.high for item in ranking]) - means
    figure = _figure(6.4, 1.4 + 0.35 * len(ranking))
    axes = figure.add_subplot()
    axes.barh([item.name for item in ranking], means, xerr=[np.maximum(lower, 0), np.maximum(upper, 0)],
              color="tab:blue", alpha=0.8, capsize=3)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("permutation importance (error increase / rank variance; bars: 10-90% bootstrap)", fontsize=8)
    _title(axes, f"Hyperparameter importance for the within-budget rank ({result.n_trials} configurations"
                 + (", uncertain)" if result.uncertain else ")"))
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def schedule_curves(history: pd.DataFrame | None, trials: Trials, schedule: Dimension | None,
                    path: Path) -> Path | None:
    """The learning rate per epoch of one configuration per schedule used (the longest), relative to its start."""
    if history is None or "learning_rate" not in history.columns:
        return None
    table = trials.table
    if schedule is not None and schedule.present:
        groups = {label: table.index[(schedule.labels == label).to_numpy()] for label in schedule.order
                  if label not in EXCLUDED}
    else:
        groups = {"(one schedule)": table.index}
    groups = {name: rows for name, rows in groups.items() if len(rows)}
    figure = _figure(6.8, 4.4)
    axes = figure.add_subplot()
    drawn = 0
    for i, ((name, rows), color) in enumerate(zip(groups.items(), _colors(len(groups)), strict=True)):
        frames = [(r, lineage_history(history, trials, table.at[r, "trial_id"]).dropna(subset=["learning_rate"]))
                  for r in rows]
        row, frame = max(frames, key=lambda item: len(item[1]))
        if frame.empty:
            continue
        rates = frame["learning_rate"].to_numpy(float)
        # Relative to the trial's initial learning rate (not its first epoch's: warmup starts low).
        base = pd.to_numeric(table.at[row, "hp.learning_rate"], errors="coerce") if "hp.learning_rate" in table \
            else np.nan
        start = base if base > 0 else (rates[0] if rates[0] > 0 else 1.0)
        axes.plot(frame["epoch"], rates / start, color=color, label=name, **_line_style(i, len(groups)))
        drawn += 1
    if not drawn:
        return None
    axes.set_yscale("log")
    axes.set_xlabel("epoch (absolute; Hyperband rounds joined)")
    axes.set_ylabel("learning rate / initial learning_rate")
    _title(axes, "Learning-rate schedules used (the longest configuration of each)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"


__all__ = ["NOT_SET", "importance_bars", "learning_curves", "lineage_history", "lr_vs_objective",
           "objective_by_choice", "safe_name", "schedule_curves"]
