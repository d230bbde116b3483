"""The guide's claims, answered from the configurations: each sentence is built from measurements.

The unit is one configuration (a Hyperband chain, ``chains.collapse``), never a round.
A comparison needs at least ``report.min_trials_per_choice`` finished configurations per
group; groups are compared on ranks within each training budget (``significance``), over the
configurations the tuner drew uniformly where trials.csv says how each was drawn
(``randomized_rows``), and a winner is named only when the stated test gives p < ``verdicts.ALPHA``
after Holm's correction over every test of the report (``Context.correct_for_multiple_tests``).
Every answer is also a ``Verdict`` record for verdicts.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from pipeline.questions import verdict_id  # the questions are declared once, there (the ablation reads them too)
from pipeline.report.chains import BUDGET, epochs_text
from pipeline.report.load import Trials
from pipeline.report.significance import GroupTest, choice_verdict, holm
from pipeline.report.stats import EXCLUDED, NOT_SET, Dimension, fixed_value, per_choice
from pipeline.verdicts import (
    NOT_APPLICABLE,
    NOT_RECORDED,
    NOT_SEARCHED,
    WINNER,
    Verdict,
)

RANK_NOTE = "mean within-budget rank, 1 = best at its budget, 0.5 = average"


@dataclass
class Finding:
    key: str
    question: str
    verdicts: list[Verdict]  # the first is the question's main answer
    sentences: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """The answer in one line: the verdict's statement, each prefixed by its subject when several."""
        if len(self.verdicts) == 1:
            return self.verdicts[0].statement
        return "; ".join(f"{v.question.rsplit('.', 1)[-1]}: {v.statement}" for v in self.verdicts)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def plural(noun: str) -> str:
    return noun[:-1] + "ies" if noun.endswith("y") else noun + "s"


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


SOURCE = "source"  # trials.csv: how the tuner drew the configuration (pipeline.tuning.prior's names)
UNIFORM_DRAW = "uniform"


def randomized_rows(table: pd.DataFrame) -> tuple[pd.Index | None, str]:
    """The configurations drawn uniformly at random, and a phrase for the sentences; (None, "") for all.

    A search that samples around good configurations (BOHB's prior, incumbent and model draws)
    pairs the values it favours with each other: comparing one hyperparameter's values over those
    configurations measures the sampler's choices as much as the value (seen on digits: the recipe's
    own initializer and translation "won" on one seed each). Among uniform draws every value is
    paired at random with the rest, so a difference is the value's. Where trials.csv does not say
    how configurations were drawn (older files, Bayesian optimization), every configuration is used.
    """
    if SOURCE not in table.columns:
        return None, ""
    source = table[SOURCE].astype("string").str.strip().str.lower()
    drawn = (source == UNIFORM_DRAW).fillna(False).to_numpy(dtype=bool)  # an unknown draw is not a uniform one
    if source.isna().all() or drawn.all():
        return None, ""
    rows = table.index[drawn]
    return rows, f"uniformly drawn configurations only ({len(rows)} of {len(table)})"


class Context:
    """What every question needs: one row per configuration, their dimensions and the thresholds."""

    def __init__(self, chains: Trials, dims: list[Dimension], min_trials: int, num_classes: int | None) -> None:
        self.trials = chains
        self.dims = {d.name: d for d in dims}
        self.min_trials = min_trials
        self.num_classes = num_classes
        self.metric = chains.objective
        table = chains.table
        self.budgets = table[BUDGET] if BUDGET in table.columns else pd.Series(math.nan, index=table.index)
        self.randomized, self.scope = randomized_rows(table)
        self.raw_p: dict[str, float] = {}  # every test run so far, by verdict id (the correction's family)
        self.adjusted_p: dict[str, float] | None = None  # set by ``correct_for_multiple_tests``

    def correct_for_multiple_tests(self) -> int:
        """Holm's correction over every test run so far; answer again to decide on the corrected p-values."""
        self.adjusted_p = holm(self.raw_p)
        return len(self.adjusted_p)

    @property
    def family(self) -> int:
        """How many tests the correction is over; 0 before it, or for a single test (nothing to correct)."""
        size = len(self.adjusted_p or {})
        return size if size > 1 else 0

    def _adjust(self, key: str, test: GroupTest) -> None:
        """``choice_verdict``'s hook, before it decides: the test's scope, its p into the family, the correction."""
        test.scope = self.scope
        self.raw_p[key] = test.p_value
        if self.family and key in self.adjusted_p:
            test.adjusted_p, test.family = self.adjusted_p[key], self.family

    def dim(self, name: str) -> Dimension | None:
        return self.dims.get(name)

    def values(self, column: str = "score") -> pd.Series:
        """``column`` of the finished configurations (NaN elsewhere)."""
        table = self.trials.table
        if column not in table.columns:
            return pd.Series(math.nan, index=table.index)
        return pd.to_numeric(table[column], errors="coerce").where(table["finished"])

    def groups(self, dim: Dimension, rows: pd.Index | None = None) -> dict[str, pd.Index]:
        """Rows (configurations, finished or not) per value of ``dim``, display order, inactive rows left out."""
        labels = dim.labels if rows is None else dim.labels.loc[dim.labels.index.intersection(rows)]
        return {label: labels.index[labels == label] for label in dim.order if label not in EXCLUDED}

    def verdict(self, key: str, groups: dict[str, pd.Index], column: str | pd.Series = "score",
                higher_is_better: bool | None = None, note: str = "") -> tuple[Verdict, GroupTest | None]:
        """``choice_verdict`` over finished configurations' ``column`` (or a per-row series such as a gap)."""
        better = self.trials.maximize if higher_is_better is None else higher_is_better
        values = self.values(column) if isinstance(column, str) else column.where(self.trials.table["finished"])
        if self.randomized is not None:
            groups = {k: pd.Index(g).intersection(self.randomized) for k, g in groups.items()}
        verdict, test = choice_verdict(key, groups, values, self.budgets, better, self.min_trials, note,
                                       adjust=self._adjust)
        if test is None and self.scope:
            verdict = replace(verdict, note="; ".join(filter(None, [verdict.note, self.scope])))
        return verdict, test

    def unavailable(self, key: str, question: str, name: str) -> Finding | None:
        """A finding for a dimension that cannot answer: not recorded, fixed, or never acting."""
        dim = self.dim(name)
        if dim is None or not dim.present:
            return Finding(key, question, [Verdict(key, NOT_RECORDED, note=f"no hp.{name} column")],
                           [f"trials.csv has no hp.{name} column."])
        if not dim.searched:
            value = fixed_value(dim)
            return Finding(key, question, [Verdict(key, NOT_SEARCHED, note=f"fixed at {value}")],
                           [f"{name} was fixed at {value} in search_space; the search cannot compare its values."])
        if dim.condition and dim.n_active == 0:
            return Finding(key, question, [Verdict(key, NOT_APPLICABLE, note=f"acts only when {dim.condition}")],
                           [f"{name} acts only when {dim.condition}, and no configuration had that."])
        return None


def scope_sentence(ctx: Context, dim: Dimension) -> list[str]:
    """Over which configurations ``dim`` is analysed: where it acted, and where a value was recorded."""
    sentences = []
    total = len(ctx.trials.table)
    if dim.condition:
        sentences.append(f"{dim.name} acts only when {dim.condition}: the {dim.n_active} of {total} configurations "
                         "where it did are analysed, the others are left out.")
    unset = int((dim.labels == NOT_SET).sum()) if dim.labels is not None else 0
    if unset:
        sentences.append(f"{unset} configuration(s) recorded no value {NOT_SET} and are left out.")
    return sentences


def describe_test(ctx: Context, verdict: Verdict, test: GroupTest | None, noun: str,
                  stats: dict[str, Any] | None = None) -> list[str]:
    """The ranking of the compared groups and the verdict in words."""
    if test is None:
        return [f"Fewer than two {plural(noun)} have {ctx.min_trials} or more finished configurations, "
                f"so the {plural(noun)} cannot be compared."]
    ordered = sorted(test.mean_rank, key=lambda k: -test.mean_rank[k])

    def part(label: str) -> str:
        extra = ""
        if stats and label in stats and not math.isnan(stats[label].best):
            extra = f", best {fmt(stats[label].best)} at {epochs_text(stats[label].best_budget)}"
        return f"{label} {test.mean_rank[label]:.2f} ({test.sizes[label]} configurations{extra})"

    sentences = [f"Ranked within their budget ({RANK_NOTE}): " + "; ".join(part(k) for k in ordered) + "."]
    if verdict.kind == WINNER:
        sentences.append(f"{verdict.winner} ranks best and the {plural(noun)} differ clearly ({test.how()}, "
                         f"{test.p_text()}).")
    elif math.isnan(test.p_value):
        sentences.append(f"Every configuration ranks the same within its budget: no {noun} can be called better.")
    else:
        sentences.append(f"No clear difference: the {plural(noun)} differ no more than configurations do by chance "
                         f"({test.how()}, {test.p_text()}), so no {noun} is named the winner.")
    return sentences


def coverage(ctx: Context, dim: Dimension) -> list[str]:
    """Groups left out of a comparison: too few configurations, all failed, never tried."""
    tail = []
    stats = [s for s in per_choice(ctx.trials, dim)]
    few = [f"{s.label} ({s.finished})" for s in stats if 0 < s.finished < ctx.min_trials]
    failed = [f"{s.label} ({s.failed})" for s in stats if s.trials and not s.finished]
    never = [s.label for s in stats if not s.trials]
    if few:
        tail.append(f"Not enough configurations (< {ctx.min_trials} finished) for: {', '.join(few)}.")
    if failed:
        tail.append(f"Every configuration failed for: {', '.join(failed)}.")
    if never:
        tail.append(f"Never tried: {', '.join(never)}.")
    return tail


def dimension_verdict(ctx: Context, dim: Dimension, key: str | None = None) -> tuple[Verdict, GroupTest | None]:
    """Does the value of ``dim`` matter (over the configurations where it acts)?"""
    key = key or verdict_id(dim.name)
    note = f"only where {dim.condition}" if dim.condition else ""
    return ctx.verdict(key, ctx.groups(dim), note=note)


def compare_choices(ctx: Context, key: str, question: str, name: str, noun: str) -> Finding:
    """Which value of ``name`` wins: within-budget ranks, Kruskal-Wallis (or Mann-Whitney) over the groups."""
    missing = ctx.unavailable(key, question, name)
    if missing:
        return missing
    dim = ctx.dim(name)
    stats = {s.label: s for s in per_choice(ctx.trials, dim)}
    verdict, test = dimension_verdict(ctx, dim, key)
    sentences = scope_sentence(ctx, dim) + describe_test(ctx, verdict, test, noun, stats) + coverage(ctx, dim)
    numbers = {k: {"configurations": s.trials, "finished": s.finished, "mean_rank": s.mean_rank, "best": s.best,
                   "failure_rate": s.failure_rate} for k, s in stats.items()}
    return Finding(key, question, [verdict], sentences, numbers)


def schedules(ctx: Context) -> Finding:
    finding = compare_choices(ctx, "lr_schedule", "Which learning-rate schedule wins?", "lr_schedule", "schedule")
    dim = ctx.dim("lr_schedule")
    if not (dim is not None and dim.usable and "constant" in dim.order):
        return finding
    groups = ctx.groups(dim)
    decaying = pd.Index([]).append([g for k, g in groups.items() if k != "constant"])
    split = {"a schedule": decaying, "constant": groups.get("constant", pd.Index([]))}
    verdict, test = ctx.verdict("lr_schedule.vs_constant", split)
    if test is not None:
        finding.verdicts.append(verdict)
        finding.sentences.append(
            f"Any schedule vs a constant rate: mean within-budget rank {test.mean_rank['a schedule']:.2f} "
            f"({test.sizes['a schedule']}) vs {test.mean_rank['constant']:.2f} ({test.sizes['constant']}), "
            f"{test.how()}, {test.p_text()}: "
            + (f"{verdict.winner} clearly better." if verdict.kind == WINNER else "no clear difference."))
    return finding


def learning_rates(ctx: Context) -> Finding:
    finding = compare_choices(ctx, "learning_rate", "Which learning rates work, and do large ones diverge?",
                              "learning_rate", "learning-rate range")
    dim = ctx.dim("learning_rate")
    if dim is None or not dim.usable:
        return finding
    tried = [s for s in per_choice(ctx.trials, dim) if s.trials]
    if tried and tried[-1].failed:
        top = tried[-1]
        finding.sentences.append(f"{top.failed} of {top.trials} configurations with the largest rates "
                                 f"({top.label}) failed.")
    return finding
