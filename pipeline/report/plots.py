"""The report's pictures, drawn with matplotlib's object API on the Agg canvas (no pyplot state).

Every function writes one PNG and returns its path, or None when there is nothing to draw.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.report.importance import ImportanceResult
from pipeline.report.load import Trials
from pipeline.report.stats import NOT_SET, Dimension

DPI = 110
MAX_LINEAGE = 50  # Hyperband continuation chains are short; this only guards against cycles


def _figure(width: float = 6.4, height: float = 4.0) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def _colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def objective_by_choice(trials: Trials, dim: Dimension, path: Path, seed: int = 0) -> Path | None:
    """Box plot of the objective per choice with every finished trial as a jittered point."""
    finished = trials.finished
    labels = dim.labels.loc[finished.index]
    order = [label for label in dim.order if (labels == label).any()]
    if not order:
        return None
    data = [finished.loc[labels == label, "score"].to_numpy(float) for label in order]
    failed = [int(((dim.labels == label) & ~trials.table["finished"]).sum()) for label in order]
    figure = _figure(max(4.5, 1.0 + 0.9 * len(order)), 3.8)
    axes = figure.add_subplot()
    axes.boxplot(data, widths=0.5, showfliers=False, medianprops={"color": "black"})
    crowded = len(order) > 4 or max(len(label) for label in order) * len(order) > 36
    axes.set_xticks(range(1, len(order) + 1), [_tick(label, n) for label, n in zip(order, failed, strict=True)],
                    rotation=30 if crowded else 0, ha="right" if crowded else "center")
    rng = np.random.default_rng(seed)
    for i, values in enumerate(data, start=1):
        axes.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=14, alpha=0.7, color="tab:blue", zorder=3)
    axes.set_xlabel(dim.name + (" (binned)" if dim.binned else ""))
    axes.set_ylabel(trials.objective)
    axes.set_title(f"{trials.objective} per {dim.name} ({len(finished)} finished trials)")
    axes.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def _tick(label: str, failed: int) -> str:
    return f"{label}\n({failed} failed)" if failed else label


def lr_vs_objective(trials: Trials, lr: Dimension, schedule: Dimension | None, path: Path) -> Path | None:
    finished = trials.finished
    if lr.numeric is None:
        return None
    rates = lr.numeric.loc[finished.index]
    keep = rates.notna() & (rates > 0)
    if not keep.any():
        return None
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    if schedule is not None and schedule.usable:
        groups = schedule.labels.loc[finished.index]
        names = [label for label in schedule.order if ((groups == label) & keep).any()]
        for name, color in zip(names, _colors(len(names)), strict=True):
            mask = keep & (groups == name)
            axes.scatter(rates[mask], finished.loc[mask, "score"], s=22, alpha=0.8, color=color, label=name)
        axes.legend(title="lr_schedule", fontsize=8)
    else:
        axes.scatter(rates[keep], finished.loc[keep, "score"], s=22, alpha=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("initial learning rate")
    axes.set_ylabel(trials.objective)
    axes.set_title("Learning rate vs " + trials.objective)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def lineage_history(history: pd.DataFrame, trials: Trials, trial_id: str) -> pd.DataFrame:
    """A trial's epochs preceded by those of the trials it continues (Hyperband rounds)."""
    parents = trials.table.set_index("trial_id")["continued_from"] if "continued_from" in trials.table else None
    parts, seen, current = [], set(), str(trial_id)
    while current and current not in seen and len(seen) < MAX_LINEAGE:
        seen.add(current)
        own = history[history["trial_id"] == current]
        if parts and not own.empty:
            own = own[own["epoch"] < parts[-1]["epoch"].min()]
        parts.append(own)
        parent = parents.get(current) if parents is not None and current in parents.index else None
        current = "" if parent is None or (isinstance(parent, float) and math.isnan(parent)) else _id(parent)
    frame = pd.concat(parts[::-1]) if parts else history.iloc[0:0]
    return frame.sort_values("epoch")


def _id(value: object) -> str:
    text = str(value)
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text


def learning_curves(history: pd.DataFrame | None, trials: Trials, curves: list[tuple[str, str]], path: Path,
                    title: str) -> Path | None:
    """Validation and training curves of the objective's metric; ``curves`` is [(trial_id, label)]."""
    if history is None or not curves:
        return None
    metric = trials.objective if trials.objective in history.columns else None
    if metric is None:
        return None
    train_metric = metric.removeprefix("val_")
    figure = _figure(6.8, 4.2)
    axes = figure.add_subplot()
    drawn = 0
    for (trial_id, label), color in zip(curves, _colors(len(curves)), strict=True):
        frame = lineage_history(history, trials, trial_id)
        if frame.empty:
            continue
        axes.plot(frame["epoch"], frame[metric], color=color, marker="o", markersize=3, label=label)
        if train_metric in frame.columns and train_metric != metric:
            axes.plot(frame["epoch"], frame[train_metric], color=color, linestyle=":", alpha=0.7)
        drawn += 1
    if not drawn:
        return None
    axes.set_xlabel("epoch (absolute; Hyperband rounds joined)")
    axes.set_ylabel(metric + (f" (dotted: {train_metric})" if train_metric != metric else ""))
    axes.set_title(title)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, path)


def importance_bars(result: ImportanceResult, path: Path) -> Path | None:
    if not result.ranking:
        return None
    ranking = result.ranking[::-1]
    means = np.array([item.mean for item in ranking])
    lower = means - np.array([item.low for item in ranking])
    upper = np.array([item.high for item in ranking]) - means
    figure = _figure(6.4, 1.2 + 0.35 * len(ranking))
    axes = figure.add_subplot()
    axes.barh([item.name for item in ranking], means, xerr=[np.maximum(lower, 0), np.maximum(upper, 0)],
              color="tab:blue", alpha=0.8, capsize=3)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("permutation importance (error increase / variance; bars: 10-90% bootstrap)")
    axes.set_title(f"Hyperparameter importance ({result.n_trials} finished trials"
                   + (", uncertain)" if result.uncertain else ")"))
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def schedule_curves(history: pd.DataFrame | None, trials: Trials, schedule: Dimension | None,
                    path: Path) -> Path | None:
    """The learning rate per epoch of one trial per schedule used (the longest one), relative to its start."""
    if history is None or "learning_rate" not in history.columns:
        return None
    table = trials.table
    if schedule is not None and schedule.present:
        groups = {label: table.index[(schedule.labels == label).to_numpy()] for label in schedule.order}
    else:
        groups = {"(one schedule)": table.index}
    figure = _figure(6.8, 4.2)
    axes = figure.add_subplot()
    drawn = 0
    for (name, rows), color in zip(groups.items(), _colors(len(groups)), strict=True):
        if not len(rows):
            continue
        frames = [(i, lineage_history(history, trials, table.at[i, "trial_id"]).dropna(subset=["learning_rate"]))
                  for i in rows]
        row, frame = max(frames, key=lambda item: len(item[1]))
        if frame.empty:
            continue
        rates = frame["learning_rate"].to_numpy(float)
        # Relative to the trial's initial learning rate (not its first epoch's: warmup starts low).
        base = pd.to_numeric(table.at[row, "hp.learning_rate"], errors="coerce") if "hp.learning_rate" in table \
            else np.nan
        start = base if base > 0 else (rates[0] if rates[0] > 0 else 1.0)
        axes.plot(frame["epoch"], rates / start, color=color, marker="o", markersize=3, label=name)
        drawn += 1
    if not drawn:
        return None
    axes.set_yscale("log")
    axes.set_xlabel("epoch (absolute; Hyperband rounds joined)")
    axes.set_ylabel("learning rate / initial learning_rate")
    axes.set_title("Learning-rate schedules used (longest trial of each)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, which="both")
    return _save(figure, path)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "_"


__all__ = ["NOT_SET", "importance_bars", "learning_curves", "lineage_history", "lr_vs_objective",
           "objective_by_choice", "safe_name", "schedule_curves"]
