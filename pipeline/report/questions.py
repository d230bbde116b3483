"""The guide's claims, answered from the trials: each sentence is built from measurements.

A verdict needs at least ``report.min_trials_per_choice`` finished trials per compared
group; otherwise it says "not enough trials". Group differences are tested with rank
tests (Mann-Whitney for two groups, Kruskal-Wallis for more) so that "X wins" is only
said when the trials support it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from pipeline.report.load import Trials
from pipeline.report.stats import NOT_SET, Dimension, per_choice

ALPHA = 0.05  # significance level of the rank tests
# Best validation accuracy within this much of 1/num_classes counts as "at chance".
CHANCE_MARGIN = 0.05
NOT_ENOUGH = "not enough trials"


@dataclass
class Finding:
    key: str
    question: str
    verdict: str
    sentences: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


def fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else ("p<0.001" if p < 0.001 else f"p={p:.3f}")


def _two_groups_p(a: pd.Series, b: pd.Series) -> float:
    from scipy.stats import mannwhitneyu

    if len(a) < 2 or len(b) < 2 or pd.concat([a, b]).nunique() < 2:
        return math.nan
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def _many_groups_p(groups: list[pd.Series]) -> float:
    from scipy.stats import kruskal

    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < 2 or pd.concat(groups).nunique() < 2:
        return math.nan
    return float(kruskal(*groups).pvalue)


class Context:
    """What every question needs: the trials, their dimensions and the thresholds."""

    def __init__(self, trials: Trials, dims: list[Dimension], min_trials: int, num_classes: int | None) -> None:
        self.trials = trials
        self.dims = {d.name: d for d in dims}
        self.min_trials = min_trials
        self.num_classes = num_classes
        self.metric = trials.objective

    def dim(self, name: str) -> Dimension | None:
        return self.dims.get(name)

    def groups(self, dim: Dimension, column: str = "score", rows: pd.Index | None = None) -> dict[str, pd.Series]:
        """Finished trials' ``column`` values per group label of ``dim`` (display order)."""
        finished = self.trials.finished
        if rows is not None:
            finished = finished.loc[finished.index.intersection(rows)]
        values = pd.to_numeric(finished[column], errors="coerce") if column in finished.columns else None
        if values is None:
            return {}
        labels = dim.labels.loc[finished.index]
        return {label: values[labels == label].dropna() for label in dim.order if label != NOT_SET}

    def median_key(self, value: float) -> float:
        return value if self.trials.maximize else -value

    def unavailable(self, key: str, question: str, name: str) -> Finding | None:
        """A finding for a dimension that cannot answer: not recorded, or fixed."""
        dim = self.dim(name)
        if dim is None or not dim.present:
            return Finding(key, question, "not recorded", [f"trials.csv has no hp.{name} column."])
        if not dim.searched:
            value = dim.spec.value if hasattr(dim.spec, "value") else dim.spec.choices[0]
            return Finding(key, question, "not searched",
                           [f"{name} was fixed at {value} in search_space; the search cannot compare its values."])
        return None


def compare_choices(ctx: Context, key: str, question: str, name: str, noun: str) -> Finding:
    """Which value of ``name`` wins, from medians and a Kruskal-Wallis test over the groups."""
    missing = ctx.unavailable(key, question, name)
    if missing:
        return missing
    dim = ctx.dim(name)
    groups = ctx.groups(dim)
    stats = {s.label: s for s in per_choice(ctx.trials, dim)}
    enough = {k: v for k, v in groups.items() if len(v) >= ctx.min_trials}
    few = {k: len(v) for k, v in groups.items() if 0 < len(v) < ctx.min_trials}
    never = [k for k, v in groups.items() if len(v) == 0 and stats[k].failed == 0]
    all_failed = [k for k, v in groups.items() if len(v) == 0 and stats[k].failed > 0]
    numbers = {k: {"finished": len(v), "median": float(v.median()) if len(v) else None,
                   "best": ctx.trials.best_value(v) if len(v) else None,
                   "failure_rate": stats[k].failure_rate} for k, v in groups.items()}
    sentences = []
    tail = []
    if few:
        tail.append(f"Not enough trials (< {ctx.min_trials} finished) for: "
                    + ", ".join(f"{k} ({n})" for k, n in few.items()) + ".")
    if all_failed:
        tail.append("Every trial failed for: " + ", ".join(f"{k} ({stats[k].failed})" for k in all_failed) + ".")
    if never:
        tail.append("Never tried: " + ", ".join(never) + ".")
    if len(enough) < 2:
        sentences.append(f"Fewer than two {noun}s have {ctx.min_trials} or more finished trials, "
                         f"so the {noun}s cannot be compared.")
        if len(enough) == 1:
            (only, values), = enough.items()
            sentences.append(f"{only}: median {ctx.metric} {fmt(values.median())} over {len(values)} trials.")
        return Finding(key, question, NOT_ENOUGH, sentences + tail, numbers)

    ordered = sorted(enough.items(), key=lambda kv: ctx.median_key(kv[1].median()), reverse=True)
    winner, values = ordered[0]
    p = _many_groups_p([v for _, v in ordered])
    best_trial = stats[winner].best_trial
    sentences.append(
        f"{winner} has the best median {ctx.metric}: {fmt(values.median())} over {len(values)} trials "
        f"(best {fmt(ctx.trials.best_value(values))}, trial {best_trial})."
    )
    sentences.append("Then " + "; ".join(f"{k} {fmt(v.median())} ({len(v)})" for k, v in ordered[1:]) + ".")
    if not math.isnan(p) and p < ALPHA:
        verdict = winner
        sentences.append(f"The {noun}s differ clearly (Kruskal-Wallis {fmt_p(p)}).")
    else:
        verdict = f"no clear winner ({winner} ahead)"
        sentences.append(f"The differences are within the trial-to-trial noise (Kruskal-Wallis {fmt_p(p)}), "
                         f"so no {noun} clearly wins.")
    numbers["p_value"] = p
    numbers["winner"] = winner
    return Finding(key, question, verdict, sentences + tail, numbers)


def accuracy_column(ctx: Context) -> str | None:
    finished = ctx.trials.finished
    if "val_accuracy" in finished.columns and finished["val_accuracy"].notna().any():
        return "val_accuracy"
    return "score" if ctx.trials.maximize and "acc" in ctx.metric else None


def zero_init(ctx: Context) -> Finding:
    key, question = "zero_init", "Does zero initialization learn, or does it sit at chance?"
    dim = ctx.dim("init")
    if dim is None or not dim.present:
        return Finding(key, question, "not recorded", ["trials.csv has no hp.init column."])
    column = accuracy_column(ctx)
    if column is None:
        return Finding(key, question, "not recorded", ["trials.csv has no validation accuracy to compare."])
    metric = "val_accuracy" if column == "val_accuracy" else ctx.metric
    groups = ctx.groups(dim, column)
    zeros = groups.get("zeros", pd.Series(dtype=float))
    failed = int(((dim.labels == "zeros") & ~ctx.trials.table["finished"]).sum())
    chance = 1 / ctx.num_classes if ctx.num_classes else None
    numbers: dict[str, Any] = {"finished": len(zeros), "failed": failed, "chance": chance}
    if "zeros" not in dim.order or (zeros.empty and not failed):
        return Finding(key, question, "not tried", ["No trial used zeros initialization."], numbers)
    if len(zeros) < ctx.min_trials:
        sentences = [f"zeros: {len(zeros)} finished trial(s) (and {failed} failed); "
                     f"{ctx.min_trials} needed for a verdict."]
        if len(zeros):
            sentences.append(f"Best {metric} so far {fmt(zeros.max())}"
                             + (f", chance level {fmt(chance)}." if chance else "."))
        return Finding(key, question, NOT_ENOUGH, sentences, numbers)
    best, median = float(zeros.max()), float(zeros.median())
    numbers.update(best=best, median=median)
    others = pd.concat([v for k, v in groups.items() if k != "zeros"] or [pd.Series(dtype=float)])
    sentences = [f"zeros: best {metric} {fmt(best)} over {len(zeros)} trials (median {fmt(median)}"
                 + (f", {failed} failed)." if failed else ").")]
    if len(others):
        sentences.append(f"The other initializers: median {fmt(others.median())}, best {fmt(others.max())} "
                         f"over {len(others)} trials.")
        numbers.update(others_median=float(others.median()), others_best=float(others.max()))
    if chance is not None:
        if best <= chance + CHANCE_MARGIN:
            verdict = "at chance"
            sentences.append(f"Chance level is 1/{ctx.num_classes} = {fmt(chance)}: even the best zeros trial is "
                             f"within {CHANCE_MARGIN} of it, so zero initialization did not learn here, "
                             "as the guide claims.")
        else:
            verdict = "learns"
            sentences.append(f"Chance level is 1/{ctx.num_classes} = {fmt(chance)}: the best zeros trial is "
                             f"{fmt(best - chance)} above it, so zero initialization did learn something here, "
                             "against the guide's claim (biases, batch normalization or a non-zero layer "
                             "can break the symmetry).")
        return Finding(key, question, verdict, sentences, numbers)
    p = _two_groups_p(zeros, others)
    sentences.append("Chance level is unknown (no num_classes in data/processed/meta.json).")
    if not math.isnan(p) and p < ALPHA and zeros.median() < others.median():
        verdict = "worse than the others"
        sentences.append(f"zeros is clearly worse than the other initializers (Mann-Whitney {fmt_p(p)}).")
    else:
        verdict = "no clear difference"
        sentences.append(f"zeros is not clearly worse than the other initializers (Mann-Whitney {fmt_p(p)}).")
    return Finding(key, question, verdict, sentences, numbers)


def he_vs_glorot(ctx: Context) -> Finding:
    key, question = "he_vs_glorot", "With ReLU, does He initialization beat Glorot (Xavier)?"
    missing = ctx.unavailable(key, question, "init")
    if missing:
        return missing
    dim = ctx.dim("init")
    rows = ctx.trials.table.index
    activation = ctx.dim("activation")
    note = []
    if activation is not None and activation.usable:
        rows = rows[(activation.labels == "relu").to_numpy()]
        note.append(f"Only the {len(rows)} trials with relu activation are compared.")
    elif activation is not None and not activation.searched:
        if activation.spec.value != "relu":
            return Finding(key, question, "not applicable", [
                f"activation is fixed at {activation.spec.value}, not relu; the guide's claim is about ReLU."])
        note.append("Every trial uses relu.")
    groups = ctx.groups(dim, rows=rows)
    he = pd.concat([v for k, v in groups.items() if k.startswith("he_")] or [pd.Series(dtype=float)])
    glorot = pd.concat([v for k, v in groups.items() if k.startswith("glorot_")] or [pd.Series(dtype=float)])
    he_names = [k for k in groups if k.startswith("he_")]
    glorot_names = [k for k in groups if k.startswith("glorot_")]
    numbers: dict[str, Any] = {"he_finished": len(he), "glorot_finished": len(glorot)}
    if not he_names or not glorot_names:
        absent = "He" if not he_names else "Glorot"
        return Finding(key, question, "not tried", [f"No {absent} initializer is among the choices searched."],
                       numbers)
    if len(he) < ctx.min_trials or len(glorot) < ctx.min_trials:
        return Finding(key, question, NOT_ENOUGH, note + [
            f"He ({', '.join(he_names)}): {len(he)} finished trials; Glorot ({', '.join(glorot_names)}): "
            f"{len(glorot)}; {ctx.min_trials} each needed for a verdict."], numbers)
    p = _two_groups_p(he, glorot)
    numbers.update(he_median=float(he.median()), glorot_median=float(glorot.median()), p_value=p,
                   he_best=ctx.trials.best_value(he), glorot_best=ctx.trials.best_value(glorot))
    sentences = note + [
        f"He ({', '.join(he_names)}): median {ctx.metric} {fmt(he.median())}, best "
        f"{fmt(ctx.trials.best_value(he))} over {len(he)} trials; Glorot ({', '.join(glorot_names)}): median "
        f"{fmt(glorot.median())}, best {fmt(ctx.trials.best_value(glorot))} over {len(glorot)} trials."
    ]
    he_ahead = ctx.median_key(he.median()) > ctx.median_key(glorot.median())
    if not math.isnan(p) and p < ALPHA:
        verdict = "He better" if he_ahead else "Glorot better"
        sentences.append(f"The difference is clear (Mann-Whitney {fmt_p(p)}): "
                         + ("He wins, as the guide says." if he_ahead else "Glorot wins, against the guide's claim."))
    else:
        verdict = "no clear difference"
        sentences.append(f"The difference is within the noise (Mann-Whitney {fmt_p(p)}): "
                         f"{'He' if he_ahead else 'Glorot'} is ahead, but not clearly.")
    return Finding(key, question, verdict, sentences, numbers)


def schedules(ctx: Context) -> Finding:
    finding = compare_choices(ctx, "lr_schedule", "Which learning-rate schedule wins?", "lr_schedule", "schedule")
    dim = ctx.dim("lr_schedule")
    if not (dim is not None and dim.usable and "constant" in dim.order):
        return finding
    groups = ctx.groups(dim)
    constant = groups.get("constant", pd.Series(dtype=float))
    decaying = pd.concat([v for k, v in groups.items() if k != "constant"] or [pd.Series(dtype=float)])
    if len(constant) >= ctx.min_trials and len(decaying) >= ctx.min_trials:
        p = _two_groups_p(decaying, constant)
        clear = not math.isnan(p) and p < ALPHA
        ahead = "the schedules" if ctx.median_key(decaying.median()) > ctx.median_key(constant.median()) \
            else "the constant rate"
        finding.sentences.append(
            f"Any schedule vs a constant rate: median {fmt(decaying.median())} ({len(decaying)}) vs "
            f"{fmt(constant.median())} ({len(constant)}), Mann-Whitney {fmt_p(p)}: "
            + (f"{ahead} clearly better." if clear else f"{ahead} ahead, not clearly."))
        finding.numbers["schedule_vs_constant_p"] = p
    return finding


def learning_rates(ctx: Context) -> Finding:
    key, question = "learning_rate", "Which learning rates work, and do large ones diverge?"
    missing = ctx.unavailable(key, question, "learning_rate")
    if missing:
        return missing
    dim = ctx.dim("learning_rate")
    stats = [s for s in per_choice(ctx.trials, dim) if s.trials and s.label != NOT_SET]
    eligible = [s for s in stats if s.finished >= ctx.min_trials]
    parts = [f"{s.label}: median {fmt(s.median)} over {s.finished}, {s.failed} failed" for s in stats]
    if not eligible:
        return Finding(key, question, NOT_ENOUGH,
                       [f"No learning-rate range has {ctx.min_trials} finished trials."] + (
                           ["Per range: " + "; ".join(parts) + "."] if parts else []))
    best = max(eligible, key=lambda s: ctx.median_key(s.median))
    sentences = [f"Learning rates in {best.label} have the best median {ctx.metric} ({fmt(best.median)} "
                 f"over {best.finished} trials).", "Per range: " + "; ".join(parts) + "."]
    top = stats[-1]
    if top.trials and top.failed:
        sentences.append(f"{top.failed} of {top.trials} trials with the largest rates ({top.label}) failed.")
    return Finding(key, question, best.label, sentences, {"best_range": best.label})


def _gap_by(ctx: Context, dim: Dimension, split: dict[str, list[str]] | None = None) -> dict[str, pd.Series]:
    finished = ctx.trials.finished
    gap = finished["accuracy"] - finished["val_accuracy"]
    labels = dim.labels.loc[finished.index]
    if split is None:
        return {k: gap[labels == k].dropna() for k in dim.order if k != NOT_SET}
    return {name: gap[labels.isin(members)].dropna() for name, members in split.items()}


def regularization_gap(ctx: Context) -> Finding:
    key, question = "regularization_gap", "Does regularization shrink the train-validation gap?"
    finished = ctx.trials.finished
    if not {"accuracy", "val_accuracy"} <= set(finished.columns):
        return Finding(key, question, "not recorded", ["trials.csv has no accuracy/val_accuracy columns."])
    sentences, numbers, verdicts = [], {}, []
    for name, baseline in (("regularizer", "none"), ("dropout", "0")):
        dim = ctx.dim(name)
        if dim is None or not dim.usable:
            if dim is not None and dim.present and not dim.searched:
                sentences.append(f"{name} was fixed at {dim.spec.value}.")
            continue
        if name == "dropout":
            on = [k for k in dim.order if k not in (baseline, NOT_SET)]
            gaps = _gap_by(ctx, dim, {"0": [baseline], "> 0": on})
            baseline_label = "0"
        else:
            gaps = _gap_by(ctx, dim)
            baseline_label = baseline
        numbers[name] = {k: {"n": len(v), "median_gap": float(v.median()) if len(v) else None}
                         for k, v in gaps.items()}
        listed = "; ".join(f"{k} {fmt(v.median())} ({len(v)})" for k, v in gaps.items() if len(v))
        sentences.append(f"Median gap (accuracy - val_accuracy) by {name}: {listed}.")
        base = gaps.get(baseline_label, pd.Series(dtype=float))
        if len(base) < ctx.min_trials:
            sentences.append(f"Not enough trials without {name} ({len(base)}) to compare with.")
            verdicts.append(NOT_ENOUGH)
            continue
        compared = False
        for label, values in gaps.items():
            if label == baseline_label or len(values) < ctx.min_trials:
                continue
            compared = True
            p = _two_groups_p(values, base)
            difference = float(values.median() - base.median())
            direction = "smaller" if difference < 0 else ("larger" if difference > 0 else "the same median")
            clear = not math.isnan(p) and p < ALPHA and difference != 0
            sentences.append(f"{name} {label} vs {baseline_label}: gap {fmt(values.median())} vs "
                             f"{fmt(base.median())}, {direction} ({'clear' if clear else 'not clear'}, "
                             f"Mann-Whitney {fmt_p(p)}).")
            verdicts.append(direction if clear else "unclear")
        if not compared:
            sentences.append(f"No regularized {name} setting has {ctx.min_trials} finished trials.")
            verdicts.append(NOT_ENOUGH)
    if not verdicts:
        verdict = "not searched" if sentences else "not recorded"
        return Finding(key, question, verdict, sentences or ["Neither regularizer nor dropout was recorded."], numbers)
    if "smaller" in verdicts:
        verdict = "yes, for some settings"
    elif all(v == NOT_ENOUGH for v in verdicts):
        verdict = NOT_ENOUGH
    else:
        verdict = "no clear effect"
    return Finding(key, question, verdict, sentences, numbers)


def answer_all(ctx: Context) -> list[Finding]:
    return [
        zero_init(ctx),
        he_vs_glorot(ctx),
        schedules(ctx),
        learning_rates(ctx),
        regularization_gap(ctx),
        compare_choices(ctx, "optimizer", "Which optimizer works best?", "optimizer", "optimizer"),
        compare_choices(ctx, "architecture", "Which architecture family works best?", "architecture",
                        "architecture"),
    ]
