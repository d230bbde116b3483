"""Assemble the report: statistics, importance, answers and pictures -> report.md/html, summary.json,
verdicts.json."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.ablation import section as ablation_section
from pipeline.report import search_gain, sections
from pipeline.report.chains import BUDGET, collapse, continued
from pipeline.report.claims import answer_all
from pipeline.report.importance import rank
from pipeline.report.load import load_history, load_json, load_trials, num_classes_from_meta
from pipeline.report.questions import Context, dimension_verdict, verdict_id
from pipeline.report.render import Document, write
from pipeline.report.stats import describe_dimensions, fixed_value
from pipeline.verdicts import WINNER, Verdict, merge, read_verdicts, write_verdicts

VERDICTS_FILE = "verdicts.json"
OUTPUT_NAMES = ("report.md", "report.html", "summary.json", VERDICTS_FILE)
# The PNGs get their own folder so that dvc.yaml can declare it as image plots as a whole
# (a plots entry on results/report would also try to parse report.md/html as data).
FIGURES = sections.FIGURES


@dataclass(frozen=True)
class Inputs:
    trials: Path
    history: Path
    best: Path
    meta: Path
    # verdicts.json files of other evidence (an ablation stage): their records replace the search's
    # records with the same question id. A missing file is skipped.
    evidence: Sequence[Path] = ()
    # results/ablate/results.json: its effects table and figure get a section (absent: the section says so)
    ablation: Path | None = None
    # results/evaluate/metrics.json: the final model next to the scikit-learn baselines (absent: no section)
    evaluation: Path | None = None
    # results/tune/metrics.json and results/train/run.json: what the search bought over the initial point
    tune_metrics: Path | None = None
    train_run: Path | None = None


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


def other_evidence(paths: Sequence[Path]) -> list[Verdict]:
    """Verdicts from other sources (ablation), in the order given; missing files are skipped."""
    found: list[Verdict] = []
    for path in paths:
        if Path(path).is_file():
            found.extend(read_verdicts(path))
    return found


def build_report(space: Any, min_trials: int, top_trials: int, inputs: Inputs, out_dir: Path,
                 default_objective: str = "val_accuracy", seed: int = 0, bootstraps: int = 30) -> dict[str, Any]:
    """Write report.md, report.html, the PNGs, verdicts.json and summary.json into ``out_dir``; return the summary."""
    trials = load_trials(inputs.trials, default_objective)
    chains = collapse(trials)
    history = load_history(inputs.history)
    best = load_json(inputs.best)
    num_classes = num_classes_from_meta(load_json(inputs.meta))
    dims = describe_dimensions(space, chains.table)
    by_name = {d.name: d for d in dims}
    ctx = Context(chains, dims, min_trials, num_classes)
    clean(out_dir)

    def answer() -> tuple[list[Any], dict[str, Any]]:
        found = answer_all(ctx)
        return found, {d.name: dimension_verdict(ctx, d) for d in dims if d.usable and (not d.condition or d.n_active)}

    findings, per_dimension = answer()
    if ctx.correct_for_multiple_tests():  # decide again, each test against the whole family's error rate
        findings, per_dimension = answer()
    search = [v for f in findings for v in f.verdicts] + [v for v, _ in per_dimension.values()]
    verdicts = {v.question: v for v in merge(search, other_evidence(inputs.evidence))}

    doc = Document("What the hyperparameter search learned")
    sections.overview(doc, trials, chains, best, num_classes)
    best_trial = sections.best_trial(doc, trials, chains, dims)
    sections.answers(doc, findings, verdicts, ctx)
    sections.baselines(doc, inputs.evaluation)
    search_gain.write_section(doc, inputs.tune_metrics, inputs.train_run)
    ablated = ablation_section.section(doc, inputs.ablation, out_dir / FIGURES, best)
    importance = rank(chains, dims, bootstraps=bootstraps, seed=seed)
    sections.importance(doc, importance, out_dir)
    top = sections.top_configurations(doc, chains, dims, top_trials)
    sections.curves(doc, chains, by_name, history, top, out_dir)
    doc.heading(1, "Per hyperparameter")
    for dim in sorted(dims, key=lambda d: not d.searched):
        found = per_dimension.get(dim.name)
        verdict = verdicts.get(verdict_id(dim.name)) if found else None
        sections.dimension(doc, ctx, dim, verdict, found[1] if found else None, out_dir)
    write(doc, out_dir)
    write_verdicts(out_dir / VERDICTS_FILE, verdicts.values())

    budgets = chains.table[BUDGET].value_counts(dropna=False).sort_index()
    summary = {
        "objective": trials.objective,
        "direction": "max" if trials.maximize else "min",
        "trials": len(trials.table),
        "configurations": len(chains.table),
        "budgets": {("unknown" if math.isnan(k) else f"{k:g}"): int(v) for k, v in budgets.items()},
        "finished": len(trials.finished),
        "failed": trials.n_failed,
        "finished_configurations": len(chains.finished),
        "continued": continued(trials),
        "num_classes": num_classes,
        "best_trial": best_trial,
        "importance": {
            "uncertain": importance.uncertain,
            "reason": importance.reason,
            "ranking": [vars(item) for item in importance.ranking],
        },
        "answers": {f.key: sections.answer_record(f, verdicts) for f in findings},
        "best_value": {name: (v.winner if (v := verdicts.get(verdict_id(name))) and v.kind == WINNER else None)
                       for name in per_dimension},
        "fixed": {d.name: fixed_value(d) for d in dims if not d.searched},
        "top_configurations": top,
        "verdicts": VERDICTS_FILE,
        "ablation": ablated,
        "images": [p.relative_to(out_dir).as_posix() for p in doc.images],
    }
    summary = _plain(summary)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary
