"""The tune stage's files: trials.csv, history.csv, best_hparams.json, metrics.json, summary.png."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from pipeline.atomic import open_atomic, replace_atomic, write_text_atomic
from pipeline.objective import direction_of
from pipeline.tuning.records import EPOCH_METRICS, TrialRecord
from pipeline.tuning.tracker import FAILED, FINISHED, NOT_STARTED

TRIAL_COLUMNS = (
    "trial_id", "status", "score", "objective", "bracket", "round", "continued_from", "initial_epoch",
    "target_epochs", "budget_cut_at", "epochs_trained", "best_epoch", "seconds", "seconds_per_epoch",
    "params_count", "run_id", "source", "train_rows",
    "accuracy", "val_accuracy", "loss", "val_loss",
    "trial_seconds",  # the trial's whole wall time: pipeline.tuning.fixed_cost reads the fixed cost from it
)
HISTORY_COLUMNS = ("trial_id", "epoch", *EPOCH_METRICS)


def trial_rows(records: list[TrialRecord], objective: str, hp_names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        best = r.best_epoch(objective, direction_of(objective)) if r.status == FINISHED else None
        row: dict[str, Any] = {
            "trial_id": r.trial_id, "status": r.status, "score": r.score, "objective": objective,
            "bracket": r.bracket, "round": r.round, "continued_from": r.continued_from,
            "initial_epoch": r.initial_epoch, "target_epochs": r.target_epochs,
            "budget_cut_at": r.budget_cut_at, "source": r.source, "train_rows": r.train_rows,
            "epochs_trained": r.epochs_trained, "best_epoch": best["epoch"] if best else None,
            "seconds": round(r.seconds, 3), "seconds_per_epoch": _round(r.seconds_per_epoch),
            "trial_seconds": _round(r.trial_seconds),
            "params_count": r.params_count, "run_id": r.run_id,
        }
        for metric in ("accuracy", "val_accuracy", "loss", "val_loss"):
            row[metric] = best.get(metric) if best else None
        for name in hp_names:
            row[f"hp.{name}"] = r.values.get(name)
        rows.append(row)
    return rows


def ranked_records(records: list[TrialRecord], objective: str) -> list[TrialRecord]:
    """The finished, scored trials, best first: the one order behind "the best trial" and ``top``.

    Ties go to the longer-trained trial (its score rests on more epochs), then to the earlier trial id.
    """
    scored = [r for r in records if r.status == FINISHED and r.score is not None and math.isfinite(r.score)]
    sign = -1.0 if direction_of(objective) == "max" else 1.0
    return sorted(scored, key=lambda r: (sign * r.score, -(r.initial_epoch + r.epochs_trained), r.trial_id))


def best_record(records: list[TrialRecord], objective: str) -> TrialRecord | None:
    """The trial train retrains first (``top[0]`` of best_hparams.json)."""
    ranked = ranked_records(records, objective)
    return ranked[0] if ranked else None


def write_trials_csv(path: Path, rows: list[dict[str, Any]], hp_names: list[str]) -> None:
    _write_csv(path, [*TRIAL_COLUMNS, *(f"hp.{n}" for n in hp_names)], rows)


def write_history_csv(path: Path, records: list[TrialRecord]) -> None:
    rows = [{"trial_id": r.trial_id, **epoch} for r in records for epoch in r.history]
    _write_csv(path, HISTORY_COLUMNS, rows)


def top_configurations(records: list[TrialRecord], objective: str, count: int) -> list[TrialRecord]:
    """The best ``count`` distinct configurations, each by its best trial (continuations share values)."""
    seen: set[str] = set()
    out = []
    for record in ranked_records(records, objective):
        key = json.dumps(record.values, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out[:count]


def trained_epochs(record: TrialRecord, objective: str) -> int:
    """Epochs up to and including the trial's best one (absolute: a continuation counts its parent's)."""
    epoch = record.best_epoch(objective, direction_of(objective))
    return int(epoch["epoch"]) + 1 if epoch else record.initial_epoch + record.epochs_trained


def best_hparams(best: TrialRecord, objective: str, top: list[dict[str, Any]] | None = None,
                 **context: Any) -> dict[str, Any]:
    """What ``train`` consumes: the best trial, and ``top`` distinct configurations for an ensemble."""
    return {"trial_id": best.trial_id, "objective": objective, "score": best.score, "values": best.values,
            "epochs": trained_epochs(best, objective), "top": top or [], **context}


def candidate(record: TrialRecord, objective: str, trial_dir: Path) -> dict[str, Any]:
    """One entry of ``best_hparams.json``'s ``top``: what ``train`` needs to retrain or reuse the trial."""
    return {"trial_id": record.trial_id, "score": record.score, "values": record.values,
            "epochs": trained_epochs(record, objective), "trial_dir": str(trial_dir),
            "initial_point": record.is_initial_point}


def best_initial_point(records: list[TrialRecord], objective: str) -> TrialRecord | None:
    """The best finished trial of ``tune.initial_points`` (None: none given, none finished, or a tuner
    that does not mark them): what train hedges with (``train.hedge_initial_point``)."""
    return next((r for r in ranked_records(records, objective) if r.is_initial_point), None)


# What results/tune/metrics.json (a DVC metric) keeps: the figures people compare across experiments.
# The objective's name and the finished count stay on the search's MLflow run.
DVC_METRIC_KEYS = ("best_objective", "trials", "failed", "wall_seconds")


def search_metrics(records: list[TrialRecord], objective: str, wall_seconds: float) -> dict[str, Any]:
    best = best_record(records, objective)
    return {
        "best_objective": best.score if best else None,
        "objective": objective,
        "trials": sum(r.status != NOT_STARTED for r in records),  # trials that ran
        "completed": sum(r.status == FINISHED for r in records),
        "failed": sum(r.status == FAILED for r in records),
        "wall_seconds": round(wall_seconds, 2),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a failed write leaves the previous file whole."""
    write_text_atomic(path, json.dumps(data, indent=2, default=_plain) + "\n")


def write_summary_plot(path: Path, records: list[TrialRecord], objective: str) -> None:
    """Left: each trial's score in run order with the best so far; right: the objective per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    pick = max if direction_of(objective) == "max" else min
    xs, ys, best_so_far = [], [], []
    for i, r in enumerate(records):
        if r.score is not None:
            xs.append(i)
            ys.append(r.score)
            best_so_far.append(pick(ys))
    left.scatter(xs, ys, s=14, label="trial score")
    left.step(xs, best_so_far, where="post", color="C3", label="best so far")
    failed = [i for i, r in enumerate(records) if r.status == FAILED]
    if failed:
        left.scatter(failed, [min(ys) if ys else 0] * len(failed), marker="x", color="k", label="failed")
    left.set(xlabel="trial (run order)", ylabel=objective, title="search progress")
    left.legend(loc="best", fontsize=8)
    for r in records:
        points = [(e["epoch"], e[objective]) for e in r.history if objective in e]
        if points:
            right.plot([p[0] + 1 for p in points], [p[1] for p in points], lw=0.8, alpha=0.6, marker=".")
    right.set(xlabel="epoch", ylabel=objective, title=f"{objective} per epoch, all trials")
    fig.tight_layout()
    with replace_atomic(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def _write_csv(path: Path, columns: Any, rows: list[dict[str, Any]]) -> None:
    with open_atomic(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
