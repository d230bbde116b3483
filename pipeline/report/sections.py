"""The report's sections, each written into a ``Document`` from configurations, verdicts and figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.evaluation.baselines import MARGIN_KEY
from pipeline.report import plots
from pipeline.report.chains import BUDGET, CHAIN_TRIALS, epochs_text
from pipeline.report.importance import INTERVAL, ImportanceResult, fmt_share
from pipeline.report.load import Trials
from pipeline.report.questions import Context, Finding, describe_test, fmt, scope_sentence
from pipeline.report.render import Document
from pipeline.report.significance import GroupTest
from pipeline.report.stats import EXCLUDED, Dimension, fixed_value, per_choice, value_label
from pipeline.verdicts import ALPHA, SEARCH, Verdict

FIGURES = "figures"

METHOD = (
    "How to read the statistics: the unit is one configuration. A Hyperband continuation trains the same "
    "hyperparameters further, so a configuration and its continuations are one row, with the result and "
    "budget (epochs) of its last round. Configurations trained for different budgets are never compared "
    "directly: each score is ranked among the configurations of the same budget (1 = best at that budget, "
    "0.5 = average), and groups are compared on these ranks with a Kruskal-Wallis test (Mann-Whitney U for "
    f"two groups). A winner is named only when the test gives p < {ALPHA}; otherwise the answer is \"no clear "
    "difference\". A hyperparameter that acts only under some choice of another (weight_decay only with adamw) "
    "is analysed only over the configurations where it acted. results/report/verdicts.json holds every answer "
    "as data."
)


def effective(finding: Finding, verdicts: dict[str, Verdict]) -> list[Verdict]:
    """The finding's verdicts after other evidence replaced some of them."""
    return [verdicts.get(v.question, v) for v in finding.verdicts]


def headline(found: list[Verdict]) -> str:
    if len(found) == 1:
        return found[0].statement
    return "; ".join(f"{v.question.rsplit('.', 1)[-1]}: {v.statement}" for v in found)


def answer_record(finding: Finding, verdicts: dict[str, Verdict]) -> dict[str, Any]:
    """summary.json's entry for one question: the headline plus the main verdict's fields."""
    found = effective(finding, verdicts)
    main = found[0]
    return {"question": finding.question, "verdict": headline(found), "kind": main.kind, "winner": main.winner,
            "test": main.test, "p_value": main.p_value, "n": main.n, "evidence": main.evidence,
            "verdict_ids": [v.question for v in found], "text": finding.text}


def overview(doc: Document, trials: Trials, chains: Trials, best: dict[str, Any], num_classes: int | None) -> None:
    tuner = best.get("tuner", "the")
    run = best.get("search_run_id")
    direction = "higher" if trials.maximize else "lower"
    doc.paragraph(f"{len(trials.table)} trials of {tuner} search{f' (MLflow run {run})' if run else ''}: "
                  f"{len(trials.finished)} finished, {trials.n_failed} failed. Objective: {trials.objective} "
                  f"({direction} is better)." + (f" {num_classes} classes, so chance accuracy is "
                                                 f"{fmt(1 / num_classes)}." if num_classes else ""))
    counts = chains.table[BUDGET].value_counts(dropna=False).sort_index()
    per_budget = ", ".join(f"{n} at {epochs_text(b)}" for b, n in counts.items())
    doc.paragraph(f"These are {len(chains.table)} distinct configurations ({len(chains.finished)} finished): "
                  f"{len(trials.table) - len(chains.table)} trials continue an earlier one in a later Hyperband "
                  f"round. Final budgets: {per_budget}.")
    doc.paragraph(METHOD)
    for note in trials.notes:
        doc.paragraph(note)


def best_trial(doc: Document, trials: Trials, chains: Trials, dims: list[Dimension]) -> dict[str, Any]:
    """The search's best trial (the one ``train`` retrains), with the configuration it belongs to."""
    index = trials.best_index(trials.table)
    if index is None:
        doc.paragraph("No trial finished: every trial failed. See the failure rates per choice below.")
        return {}
    row = trials.table.loc[index]
    epochs = row.get("epochs_trained")
    members = chains.table[CHAIN_TRIALS].astype(str).str.split(">")
    chain = next((c for c, ids in zip(chains.table[CHAIN_TRIALS], members, strict=True) if row["trial_id"] in ids),
                 row["trial_id"])
    doc.paragraph(f"Best trial: {row['trial_id']} (configuration {chain}) with {trials.objective} "
                  f"{fmt(row['score'])}" + (f" after {int(epochs)} epochs." if epochs == epochs and epochs is not None
                                            else "."))
    values = {d.name: value_label(row[d.column]) for d in dims if d.usable}
    doc.table(["searched hyperparameter", "value"], [[k, v] for k, v in values.items()])
    return {"trial_id": row["trial_id"], "chain": chain, "score": row["score"], "values": values}


def answers(doc: Document, findings: list[Finding], verdicts: dict[str, Verdict], ctx: Context | None = None) -> None:
    doc.heading(1, "The guide's questions")
    if ctx is not None and ctx.randomized is not None:
        doc.paragraph(f"The search drew {len(ctx.randomized)} of its {len(ctx.trials.table)} configurations "
                      "uniformly at random and the others around the recipe, the best so far or its model, which "
                      "pairs its favourite values with each other; the search's answers compare the uniform "
                      "draws only, so a value wins for itself, not for the company the sampler gave it. Where "
                      "they are too few, the ablation's controlled runs answer.")
    if ctx is not None and ctx.family:
        doc.paragraph(f"The search's {ctx.family} tests share one error rate: their p-values are "
                      "corrected together (Holm), and a winner needs a corrected p below 0.05.")
    doc.table(["question", "verdict", "evidence"],
              [[f.question, headline(effective(f, verdicts)),
                ", ".join(dict.fromkeys(v.evidence for v in effective(f, verdicts)))] for f in findings])
    for finding in findings:
        found = effective(finding, verdicts)
        doc.heading(2, finding.question)
        doc.paragraph(f"Verdict: {headline(found)}.")
        replaced = [(old, new) for old, new in zip(finding.verdicts, found, strict=True) if new.evidence != SEARCH]
        for old, new in replaced:
            doc.paragraph(f"{new.question}: the {new.evidence} evidence replaces the search's answer, which was "
                          f"{old.statement}.")
        doc.paragraph(finding.text)


def importance(doc: Document, result: ImportanceResult, out_dir: Path) -> None:
    doc.heading(1, "Which hyperparameters mattered")
    if not result.ranking:
        doc.paragraph(f"No importance ranking: {result.reason}.")
        return
    top = result.ranking[0]
    doc.paragraph(
        f"A random forest fitted to {result.n_trials} finished configurations (target: each configuration's rank "
        f"within its budget) ranks {top.name} first: shuffling its column raises the forest's squared error on "
        f"held-out configurations by {fmt_share(top.mean)} times the rank's variance ({INTERVAL[0]}-{INTERVAL[1]}% "
        f"over bootstrap resamples: {fmt_share(top.low)} to {fmt_share(top.high)}). A conditional hyperparameter "
        "is shuffled only among the configurations where it acted. Importance near 0 means the search saw no "
        "effect of that hyperparameter."
        + (f" The ranking is uncertain: {result.reason}." if result.uncertain else " The ranking is clear.")
    )
    doc.table(["rank", "hyperparameter", "importance", f"{INTERVAL[0]}-{INTERVAL[1]}% interval",
               "main effect (eta²)"],
              [[str(i), item.name, fmt_share(item.mean), f"{fmt_share(item.low)} to {fmt_share(item.high)}",
                fmt_share(item.main_effect)] for i, item in enumerate(result.ranking, start=1)])
    doc.image(plots.importance_bars(result, out_dir / FIGURES / "importance.png"), "hyperparameter importance")


def _short(value: Any) -> str:
    """A value as the tables show it: floats to 3 significant digits."""
    return f"{value:.3g}" if isinstance(value, float) and not value.is_integer() else value_label(value)


def top_configurations(doc: Document, chains: Trials, dims: list[Dimension], top: int) -> list[dict[str, Any]]:
    """The ``top`` best distinct configurations by score, each with its budget."""
    doc.heading(1, f"Top {top} configurations")
    ranked = chains.sorted_finished().head(top)
    if ranked.empty:
        doc.paragraph("No configuration finished.")
        return []
    records, rows = [], []
    for place, (index, row) in enumerate(ranked.iterrows(), start=1):
        values = {d.name: _short(row[d.column]) for d in dims if d.usable and d.labels.at[index] not in EXCLUDED}
        budget = row[BUDGET]
        records.append({"rank": place, "trials": row[CHAIN_TRIALS], "final_trial": row["trial_id"],
                        "budget": budget, "score": row["score"], "values": values})
        rows.append([str(place), row[CHAIN_TRIALS], "?" if math.isnan(budget) else f"{budget:g}", fmt(row["score"]),
                     ", ".join(f"{k}={v}" for k, v in values.items())])
    doc.paragraph(f"The best {len(ranked)} distinct configurations by {chains.objective}, continuations joined "
                  "(a higher budget helps: compare within the same number of epochs).")
    doc.table(["#", "trials", "epochs", chains.objective, "hyperparameters (those in effect)"], rows)
    return records


def curves(doc: Document, chains: Trials, dims: dict[str, Dimension], history: Any, top: list[dict[str, Any]],
           out_dir: Path) -> None:
    doc.heading(1, "Learning curves and learning rates")
    if history is None:
        doc.paragraph("results/tune/history.csv is missing: no learning curves.")
    labels = [(r["final_trial"], f"{r['trials']} ({fmt(r['score'])}, {epochs_text(r['budget'])})") for r in top]
    doc.image(plots.learning_curves(history, chains, labels, out_dir / FIGURES / "curves_top_trials.png",
                                    f"Top {len(top)} configurations"), "learning curves of the top configurations")
    init = dims.get("init")
    if init is not None and init.present:
        picks = []
        for label in init.order:
            if label in EXCLUDED:
                continue
            index = chains.best_index(chains.table[(init.labels == label).to_numpy()])
            if index is not None:
                row = chains.table.loc[index]
                picks.append((row["trial_id"], f"{label}: {row[CHAIN_TRIALS]} ({fmt(row['score'])})"))
        doc.image(plots.learning_curves(history, chains, picks, out_dir / FIGURES / "curves_by_init.png",
                                        "Best configuration per initializer"),
                  "learning curves of the best configuration per init")
    lr, schedule = dims.get("learning_rate"), dims.get("lr_schedule")
    if lr is not None and lr.usable:
        doc.image(plots.lr_vs_objective(chains, lr, schedule, out_dir / FIGURES / "lr_vs_objective.png"),
                  "learning rate vs objective")
    doc.image(plots.schedule_curves(history, chains, schedule, out_dir / FIGURES / "lr_schedules.png"),
              "learning rate per epoch of each schedule used")


def dimension(doc: Document, ctx: Context, dim: Dimension, verdict: Verdict | None, test: GroupTest | None,
              out_dir: Path) -> None:
    """One hyperparameter: its verdict, its per-value table and figure."""
    doc.heading(2, dim.name)
    if not dim.searched:
        doc.paragraph(f"Fixed at {fixed_value(dim)} (not searched).")
        return
    if not dim.usable:
        doc.paragraph(f"Searched ({dim.spec.describe()}), but trials.csv has no {dim.column} column.")
        return
    if dim.condition and not dim.n_active:
        doc.paragraph(f"Acts only when {dim.condition}, and no configuration had that: its sampled values were "
                      "never used, so there is nothing to compare.")
        return
    stats = per_choice(ctx.trials, dim)
    sentences = scope_sentence(ctx, dim)
    if verdict is not None:
        sentences.append(f"Verdict: {verdict.statement}.")
        if verdict.evidence == SEARCH:
            sentences += describe_test(ctx, verdict, test, "value", {s.label: s for s in stats})
    doc.paragraph(" ".join(sentences))
    rows = []
    for s in stats:
        if not s.trials:
            rows.append([s.label, "0", "-", "-", "-", "-", "-", "never tried"])
            continue
        best = "-" if math.isnan(s.best) else f"{fmt(s.best)} ({epochs_text(s.best_budget)})"
        rank = "-" if math.isnan(s.mean_rank) else f"{s.mean_rank:.2f}"
        rows.append([s.label, str(s.trials), str(s.finished), f"{s.failed} ({s.failure_rate:.0%})", s.budgets, rank,
                     best, s.best_trial or "-"])
    doc.table(["value" + (" (bin)" if dim.binned else ""), "configurations", "finished", "failed", "budgets",
               "mean within-budget rank", "best", "best configuration"], rows)
    picture = out_dir / FIGURES / f"objective_by_{plots.safe_name(dim.name)}.png"
    doc.image(plots.objective_by_choice(ctx.trials, dim, picture), f"{ctx.metric} per {dim.name}")


__all__ = ["FIGURES", "answer_record", "answers", "best_trial", "curves", "dimension",
           "effective", "headline", "importance", "overview", "top_configurations"]


def baselines(doc: Document, metrics_file: Path | None) -> None:
    """Is the tuned CNN worth it: its test accuracy next to evaluate's untuned scikit-learn baselines."""
    import json

    if metrics_file is None or not Path(metrics_file).is_file():
        return
    metrics = json.loads(Path(metrics_file).read_text(encoding="utf-8"))
    found = metrics.get("baselines")
    if not isinstance(found, dict) or "accuracy" not in metrics:
        return
    doc.heading(2, "The final model against untuned baselines (same test split)")
    rows = [["final model (tuned CNN)", f"{metrics['accuracy']:.4f}"]]
    trained_on = metrics.get("baselines_trained_on") or {}
    rows += [[f"{name} (on {trained_on[name]:,} training images)" if name in trained_on else name, f"{value:.4f}"]
             for name, value in found.items()]
    rows += [[name, f"skipped: {why}"] for name, why in (metrics.get("baselines_skipped") or {}).items()]
    doc.table(["model", "test accuracy"], rows)
    margin = metrics.get(MARGIN_KEY)
    if margin is not None:
        doc.paragraph(f"Margin over the best baseline ({metrics.get('best_baseline')}): {margin:+.4f} "
                      f"({margin * 100:+.2f} points).")
