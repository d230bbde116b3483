"""The guide's specific claims (zero initialization, He vs Glorot, regularization and the gap) and the
list of every question the report answers."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.report.chains import budget_text
from pipeline.report.questions import (
    Context,
    Finding,
    compare_choices,
    describe_test,
    fmt,
    learning_rates,
    schedules,
)
from pipeline.verdicts import (
    ABOVE_CHANCE,
    AT_CHANCE,
    NOT_APPLICABLE,
    NOT_ENOUGH_DATA,
    NOT_RECORDED,
    NOT_SEARCHED,
    NOT_TRIED,
    WINNER,
    Verdict,
)

# Best validation accuracy within this much of 1/num_classes counts as "at chance".
CHANCE_MARGIN = 0.05
EMPTY = pd.Index([])


def _union(groups: dict[str, pd.Index], keep: Any) -> pd.Index:
    return EMPTY.append([g for k, g in groups.items() if keep(k)]).unique()


def accuracy_column(ctx: Context) -> str | None:
    table = ctx.trials.table
    if "val_accuracy" in table.columns and ctx.values("val_accuracy").notna().any():
        return "val_accuracy"
    return "score" if ctx.trials.maximize and "acc" in ctx.metric else None


def zero_init(ctx: Context) -> Finding:
    key, question = "zero_init", "Does zero initialization learn, or does it sit at chance?"
    dim = ctx.dim("init")
    column = accuracy_column(ctx)
    if dim is None or not dim.present or column is None:
        what = "hp.init column" if dim is None or not dim.present else "validation accuracy"
        return Finding(key, question, [Verdict(key, NOT_RECORDED, note=f"no {what}")], [f"trials.csv has no {what}."])
    metric = "val_accuracy" if column == "val_accuracy" else ctx.metric
    groups = ctx.groups(dim)
    rows = groups.get("zeros", EMPTY)
    values = ctx.values(column)
    zeros = values.loc[rows].dropna()
    failed = len(rows) - len(zeros)
    chance = 1 / ctx.num_classes if ctx.num_classes else None
    numbers: dict[str, Any] = {"finished": len(zeros), "failed": failed, "chance": chance}
    if not len(rows):
        return Finding(key, question, [Verdict(key, NOT_TRIED, note="no configuration used zeros")],
                       ["No configuration used zeros initialization."], numbers)
    if len(zeros) < ctx.min_trials:
        sentences = [f"zeros: {len(zeros)} finished configuration(s) (and {failed} failed); "
                     f"{ctx.min_trials} needed for a verdict."]
        if len(zeros):
            sentences.append(f"Best {metric} so far {fmt(zeros.max())}"
                             + (f", chance level {fmt(chance)}." if chance else "."))
        verdict = Verdict(key, NOT_ENOUGH_DATA, n=len(zeros), note=f"{ctx.min_trials} finished zeros "
                          "configurations needed")
        return Finding(key, question, [verdict], sentences, numbers)
    best, median = float(zeros.max()), float(zeros.median())
    numbers.update(best=best, median=median)
    others = values.loc[_union(groups, lambda k: k != "zeros")].dropna()
    sentences = [f"zeros: best {metric} {fmt(best)} over {len(zeros)} configurations trained for "
                 f"{budget_text(ctx.budgets.loc[zeros.index])} (median {fmt(median)}"
                 + (f", {failed} failed)." if failed else ").")]
    if len(others):
        sentences.append(f"The other initializers: median {fmt(others.median())}, best {fmt(others.max())} "
                         f"over {len(others)} configurations.")
    if chance is not None:
        # A rule, not a test: even the best of several zeros configurations stays near 1/classes.
        test = f"chance margin {CHANCE_MARGIN}"
        note = f"best {fmt(best)}, chance 1/{ctx.num_classes} = {fmt(chance)}"
        if best <= chance + CHANCE_MARGIN:
            verdict = Verdict(key, AT_CHANCE, test=test, n=len(zeros), note=note)
            sentences.append(f"Chance level is 1/{ctx.num_classes} = {fmt(chance)}: even the best zeros "
                             f"configuration is within {CHANCE_MARGIN} of it, so zero initialization did not "
                             "learn here, as the guide claims.")
        else:
            verdict = Verdict(key, ABOVE_CHANCE, test=test, n=len(zeros), note=note)
            sentences.append(f"Chance level is 1/{ctx.num_classes} = {fmt(chance)}: the best zeros configuration "
                             f"is {fmt(best - chance)} above it, so zero initialization did learn something here, "
                             "against the guide's claim (biases, batch normalization or a non-zero layer can "
                             "break the symmetry).")
        return Finding(key, question, [verdict], sentences, numbers)
    sentences.append("Chance level is unknown (no num_classes in data/processed/meta.json); zeros is compared "
                     "with the other initializers instead.")
    split = {"zeros": rows, "other initializers": _union(groups, lambda k: k != "zeros")}
    verdict, test = ctx.verdict(key, split, column, higher_is_better=True)
    return Finding(key, question, [verdict], sentences + describe_test(ctx, verdict, test, "initializer group"),
                   numbers)


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
        note.append(f"Only the {len(rows)} configurations with relu activation are compared.")
    elif activation is not None and not activation.searched:
        value = activation.spec.value if hasattr(activation.spec, "value") else activation.spec.choices[0]
        if value != "relu":
            return Finding(key, question, [Verdict(key, NOT_APPLICABLE, note=f"activation fixed at {value}")], [
                f"activation is fixed at {value}, not relu; the guide's claim is about ReLU."])
        note.append("Every configuration uses relu.")
    groups = ctx.groups(dim, rows)
    he_names = [k for k in groups if k.startswith("he_")]
    glorot_names = [k for k in groups if k.startswith("glorot_")]
    if not he_names or not glorot_names:
        absent = "He" if not he_names else "Glorot"
        return Finding(key, question, [Verdict(key, NOT_TRIED, note=f"no {absent} initializer searched")],
                       [f"No {absent} initializer is among the choices searched."])
    split = {"He": _union(groups, lambda k: k in he_names), "Glorot": _union(groups, lambda k: k in glorot_names)}
    verdict, test = ctx.verdict(key, split, note="relu only" if activation is not None and activation.usable
                                else "")
    sentences = note + [f"He = {', '.join(he_names)}; Glorot = {', '.join(glorot_names)}."]
    sentences += describe_test(ctx, verdict, test, "initializer family")
    if verdict.kind == WINNER:
        sentences.append("He wins, as the guide says." if verdict.winner == "He"
                         else "Glorot wins, against the guide's claim.")
    numbers = {"he": len(split["He"]), "glorot": len(split["Glorot"])}
    return Finding(key, question, [verdict], sentences, numbers)


def _gap_split(ctx: Context, name: str) -> dict[str, pd.Index] | None:
    """``with <name>`` / ``without <name>`` rows, or None when ``name`` cannot split the configurations."""
    dim = ctx.dim(name)
    if dim is None or not dim.usable:
        return None
    if dim.numeric is not None:  # dropout: 0 is "without", whatever the grid or bins
        known = dim.numeric.dropna()
        return {f"with {name}": known.index[known > 0], f"without {name}": known.index[known == 0]}
    groups = ctx.groups(dim)
    return {f"with {name}": _union(groups, lambda k: k != "none"), f"without {name}": groups.get("none", EMPTY)}


def regularization_gap(ctx: Context) -> Finding:
    key, question = "regularization_gap", "Does regularization shrink the train-validation gap?"
    if ctx.values("accuracy").isna().all() or ctx.values("val_accuracy").isna().all():
        return Finding(key, question, [Verdict(key, NOT_RECORDED, note="no accuracy/val_accuracy")],
                       ["trials.csv has no accuracy/val_accuracy columns."])
    gap = ctx.values("accuracy") - ctx.values("val_accuracy")
    sentences, verdicts, numbers = [], [], {}
    for name in ("regularizer", "dropout"):
        dim = ctx.dim(name)
        split = _gap_split(ctx, name)
        if split is None:
            if dim is not None and dim.present and not dim.searched:
                sentences.append(f"{name} was fixed at {dim.spec.describe()}.")
            continue
        listed = "; ".join(f"{k} {fmt(gap.loc[g].median())} ({gap.loc[g].notna().sum()})"
                           for k, g in split.items() if gap.loc[g].notna().any())
        sentences.append(f"Median gap (accuracy - val_accuracy at the best epoch) by {name}: {listed}.")
        verdict, test = ctx.verdict(f"{key}.{name}", split, gap, higher_is_better=False)
        verdicts.append(verdict)
        numbers[name] = {k: {"n": int(gap.loc[g].notna().sum()), "median_gap": gap.loc[g].median()}
                         for k, g in split.items()}
        if test is None:
            sentences.append(f"Not enough configurations with and without {name} ({ctx.min_trials} each needed).")
        elif verdict.kind == WINNER:
            effect = "shrinks" if verdict.winner.startswith("with ") else "widens"
            sentences.append(f"{name} clearly {effect} the gap ({test.how()}, {test.p_text()}; "
                             f"{test.n} configurations).")
        else:
            sentences.append(f"No clear difference in the gap with and without {name} ({test.how()}, "
                             f"{test.p_text()}; {test.n} configurations).")
    if not verdicts:
        kind = NOT_SEARCHED if sentences else NOT_RECORDED
        return Finding(key, question, [Verdict(key, kind, note="neither regularizer nor dropout searched")],
                       sentences or ["Neither regularizer nor dropout was recorded."], numbers)
    return Finding(key, question, verdicts, sentences, numbers)


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
