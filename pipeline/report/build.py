"""Assemble the report: statistics, importance, answers and pictures -> report.md/html, summary.json."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.report import plots
from pipeline.report.importance import INTERVAL, ImportanceResult, fmt_share, rank
from pipeline.report.load import Trials, load_history, load_json, load_trials, num_classes_from_meta
from pipeline.report.questions import Context, Finding, answer_all, fmt
from pipeline.report.render import Document, write
from pipeline.report.stats import (
    NOT_SET,
    Dimension,
    best_choice,
    describe_dimensions,
    fixed_value,
    per_choice,
    value_label,
)

OUTPUT_NAMES = ("report.md", "report.html", "summary.json")
# The PNGs get their own folder so that dvc.yaml can declare it as image plots as a whole
# (a plots entry on results/report would also try to parse report.md/html as data).
FIGURES = "figures"


@dataclass(frozen=True)
class Inputs:
    trials: Path
    history: Path
    best: Path
    meta: Path


def clean(out_dir: Path) -> None:
    """Remove what an earlier report wrote (its pictures may name dimensions no longer searched)."""
    (out_dir / FIGURES).mkdir(parents=True, exist_ok=True)
    for path in [*out_dir.iterdir(), *(out_dir / FIGURES).iterdir()]:
        if path.is_file() and (path.suffix == ".png" or path.name in OUTPUT_NAMES):
            path.unlink()


def _plain(value: Any) -> Any:
    """JSON-safe: NaN -> null, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _continued(trials: Trials) -> int:
    if "continued_from" not in trials.table.columns:
        return 0
    column = trials.table["continued_from"]
    return int((column.notna() & (column.astype(str).str.strip() != "")).sum())


def _overview(doc: Document, trials: Trials, best: dict[str, Any], num_classes: int | None) -> None:
    table = trials.table
    tuner = best.get("tuner", "the")
    run = best.get("search_run_id")
    direction = "higher" if trials.maximize else "lower"
    doc.paragraph(f"{len(table)} trials of {tuner} search{f' (MLflow run {run})' if run else ''}: "
                  f"{len(trials.finished)} finished, {trials.n_failed} failed. Objective: {trials.objective} "
                  f"({direction} is better)." + (f" {num_classes} classes, so chance accuracy is "
                                                 f"{fmt(1 / num_classes)}." if num_classes else ""))
    continued = _continued(trials)
    if continued:
        doc.paragraph(f"{continued} of these trials continue an earlier trial in a later Hyperband round "
                      "(continued_from). Each counts as one trial below, so choices that Hyperband promoted "
                      "appear more often and with more epochs; the medians mix training budgets.")
    for note in trials.notes:
        doc.paragraph(note)


def _best_trial(doc: Document, trials: Trials, dims: list[Dimension]) -> dict[str, Any]:
    index = trials.best_index(trials.table)
    if index is None:
        doc.paragraph("No trial finished: every trial failed. See the failure rates per choice below.")
        return {}
    row = trials.table.loc[index]
    epochs = row.get("epochs_trained")
    doc.paragraph(f"Best trial: {row['trial_id']} with {trials.objective} {fmt(row['score'])}"
                  + (f" after {int(epochs)} epochs." if epochs is not None and epochs == epochs else "."))
    values = {d.name: value_label(row[d.column]) for d in dims if d.usable}
    doc.table(["searched hyperparameter", "value"], [[k, v] for k, v in values.items()])
    return {"trial_id": row["trial_id"], "score": row["score"], "values": values}


def _importance(doc: Document, result: ImportanceResult, out_dir: Path) -> None:
    doc.heading(1, "Which hyperparameters mattered")
    if not result.ranking:
        doc.paragraph(f"No importance ranking: {result.reason}.")
        return
    top = result.ranking[0]
    doc.paragraph(
        f"A random forest fitted to {result.n_trials} finished trials ranks {top.name} first: shuffling its "
        f"column raises the forest's squared error on held-out trials by {fmt_share(top.mean)} times the "
        f"objective's variance ({INTERVAL[0]}-{INTERVAL[1]}% over bootstrap resamples: {fmt_share(top.low)} "
        f"to {fmt_share(top.high)}). Importance near 0 means the search saw no effect of that hyperparameter."
        + (f" The ranking is uncertain: {result.reason}." if result.uncertain else " The ranking is clear.")
    )
    doc.table(["rank", "hyperparameter", "importance", f"{INTERVAL[0]}-{INTERVAL[1]}% interval",
               "main effect (eta²)"],
              [[str(i), item.name, fmt_share(item.mean), f"{fmt_share(item.low)} to {fmt_share(item.high)}",
                fmt_share(item.main_effect)] for i, item in enumerate(result.ranking, start=1)])
    doc.image(plots.importance_bars(result, out_dir / FIGURES / "importance.png"), "hyperparameter importance")


def _answers(doc: Document, findings: list[Finding]) -> None:
    doc.heading(1, "The guide's questions")
    doc.table(["question", "verdict"], [[f.question, f.verdict] for f in findings])
    for finding in findings:
        doc.heading(2, finding.question)
        doc.paragraph(f"Verdict: {finding.verdict}.")
        doc.paragraph(finding.text)


def _dimension_section(doc: Document, trials: Trials, dim: Dimension, min_trials: int,
                       out_dir: Path) -> str | None:
    doc.heading(2, dim.name)
    if not dim.searched:
        doc.paragraph(f"Fixed at {fixed_value(dim)} (not searched).")
        return None
    if not dim.usable:
        doc.paragraph(f"Searched ({dim.spec.describe()}), but trials.csv has no {dim.column} column.")
        return None
    stats = per_choice(trials, dim)
    winner = best_choice(trials, stats, min_trials)
    if winner is not None:
        doc.paragraph(f"Best median {trials.objective}: {dim.name} = {winner.label} "
                      f"({fmt(winner.median)} over {winner.finished} finished trials).")
    else:
        doc.paragraph(f"Not enough trials to name a best value (no value has {min_trials} finished trials).")
    rows = []
    for s in stats:
        if not s.trials:
            rows.append([s.label, "0", "-", "-", "-", "-", "never tried"])
            continue
        rows.append([s.label, str(s.trials), str(s.finished), f"{s.failed} ({s.failure_rate:.0%})",
                     fmt(s.median), fmt(s.best), s.best_trial or "-"])
    doc.table(["value" + (" (bin)" if dim.binned else ""), "trials", "finished", "failed", "median", "best",
               "best trial"], rows)
    picture = out_dir / FIGURES / f"objective_by_{plots.safe_name(dim.name)}.png"
    doc.image(plots.objective_by_choice(trials, dim, picture), f"{trials.objective} per {dim.name}")
    return winner.label if winner else None


def _curves(doc: Document, trials: Trials, dims: dict[str, Dimension], history: Any, top: int,
            out_dir: Path) -> None:
    doc.heading(1, "Learning curves and learning rates")
    if history is None:
        doc.paragraph("results/tune/history.csv is missing: no learning curves.")
    ranked = trials.sorted_finished().head(top)
    doc.image(plots.learning_curves(
        history, trials, [(r.trial_id, f"trial {r.trial_id} ({fmt(r.score)})") for r in ranked.itertuples()],
        out_dir / FIGURES / "curves_top_trials.png", f"Top {len(ranked)} trials"), "learning curves of the top trials")
    init = dims.get("init")
    if init is not None and init.present:
        curves = []
        for label in init.order:
            index = trials.best_index(trials.table[(init.labels == label).to_numpy()])
            if index is not None and label != NOT_SET:
                row = trials.table.loc[index]
                curves.append((row["trial_id"], f"{label}: trial {row['trial_id']} ({fmt(row['score'])})"))
        doc.image(plots.learning_curves(history, trials, curves, out_dir / FIGURES / "curves_by_init.png",
                                        "Best trial per initializer"), "learning curves of the best trial per init")
    lr, schedule = dims.get("learning_rate"), dims.get("lr_schedule")
    if lr is not None and lr.usable:
        doc.image(plots.lr_vs_objective(trials, lr, schedule, out_dir / FIGURES / "lr_vs_objective.png"),
                  "learning rate vs objective")
    doc.image(plots.schedule_curves(history, trials, schedule, out_dir / FIGURES / "lr_schedules.png"),
              "learning rate per epoch of each schedule used")


def build_report(space: Any, min_trials: int, top_trials: int, inputs: Inputs, out_dir: Path,
                 default_objective: str = "val_accuracy", seed: int = 0, bootstraps: int = 30) -> dict[str, Any]:
    """Write report.md, report.html, the PNGs and summary.json into ``out_dir``; return the summary."""
    trials = load_trials(inputs.trials, default_objective)
    history = load_history(inputs.history)
    best = load_json(inputs.best)
    num_classes = num_classes_from_meta(load_json(inputs.meta))
    dims = describe_dimensions(space, trials.table)
    by_name = {d.name: d for d in dims}
    clean(out_dir)

    doc = Document("What the hyperparameter search learned")
    _overview(doc, trials, best, num_classes)
    best_trial = _best_trial(doc, trials, dims)
    findings = answer_all(Context(trials, dims, min_trials, num_classes))
    _answers(doc, findings)
    importance = rank(trials, dims, bootstraps=bootstraps, seed=seed)
    _importance(doc, importance, out_dir)
    _curves(doc, trials, by_name, history, top_trials, out_dir)
    doc.heading(1, "Per hyperparameter")
    winners = {}
    for dim in sorted(dims, key=lambda d: not d.searched):
        winners[dim.name] = _dimension_section(doc, trials, dim, min_trials, out_dir)
    write(doc, out_dir)

    summary = {
        "objective": trials.objective,
        "direction": "max" if trials.maximize else "min",
        "trials": len(trials.table),
        "finished": len(trials.finished),
        "failed": trials.n_failed,
        "continued": _continued(trials),
        "num_classes": num_classes,
        "best_trial": best_trial,
        "importance": {
            "uncertain": importance.uncertain,
            "reason": importance.reason,
            "ranking": [vars(item) for item in importance.ranking],
        },
        "answers": {f.key: {"question": f.question, "verdict": f.verdict, "text": f.text} for f in findings},
        "best_value": {k: v for k, v in winners.items() if by_name[k].usable},
        "fixed": {d.name: fixed_value(d) for d in dims if not d.searched},
        "images": [p.relative_to(out_dir).as_posix() for p in doc.images],
    }
    summary = _plain(summary)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary
