"""Rank tests between groups of configurations, with the training budget as a stratum.

Hyperband trains configurations for different budgets (1, 3, 9 epochs): a 9-epoch
configuration beats a 1-epoch one because it trained longer, not because of its
hyperparameters. So scores are first ranked within their budget and scaled to (0, 1)
(``(rank - 0.5) / n``, 1 = best at that budget, ties share their mean rank); groups are
then compared on these within-budget ranks with Kruskal-Wallis (three or more groups) or
Mann-Whitney U (two), both from scipy. With one budget the ranking is a monotone map of
the scores and the tests are the plain rank tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.report.chains import budget_text
from pipeline.verdicts import ALPHA, NO_CLEAR_DIFFERENCE, NOT_ENOUGH_DATA, WINNER, Verdict, fmt_p

KRUSKAL = "Kruskal-Wallis"
MANN_WHITNEY = "Mann-Whitney U"


def budget_ranks(values: pd.Series, budgets: pd.Series, higher_is_better: bool) -> pd.Series:
    """Each value's rank within its budget scaled to (0, 1), 1 = best; rows without a value get NaN."""
    from scipy.stats import rankdata

    frame = pd.DataFrame({"v": values, "b": budgets.reindex(values.index).fillna(-1.0)}).dropna(subset=["v"])
    out = pd.Series(np.nan, index=values.index, dtype=float)
    for _, stratum in frame.groupby("b"):
        oriented = stratum["v"].to_numpy(float) * (1 if higher_is_better else -1)
        out.loc[stratum.index] = (rankdata(oriented) - 0.5) / len(stratum)
    return out


@dataclass
class GroupTest:
    """A rank test between groups on within-budget ranks."""

    test: str
    p_value: float  # NaN when no test was possible (one group, or every rank equal)
    n: int
    mean_rank: dict[str, float] = field(default_factory=dict)  # per group, 0.5 = average at its budget
    sizes: dict[str, int] = field(default_factory=dict)
    budgets: list[float] = field(default_factory=list)
    scope: str = ""  # which configurations were compared, when not all (e.g. uniformly drawn ones)
    adjusted_p: float | None = None  # p after a multiple-testing correction over the report's tests
    family: int = 0  # how many tests that correction was over

    @property
    def decisive_p(self) -> float:
        """The p-value the verdict is decided on: corrected where a correction was made."""
        return self.p_value if self.adjusted_p is None else self.adjusted_p

    @property
    def stratified(self) -> bool:
        return len(self.budgets) > 1

    @property
    def leader(self) -> str:
        return max(self.mean_rank, key=lambda k: self.mean_rank[k])

    @property
    def clear(self) -> bool:
        return not math.isnan(self.p_value) and self.decisive_p < ALPHA

    def how(self) -> str:
        """How the comparison was made, for the report's sentences."""
        if self.stratified:
            text = f"{self.test} on ranks within each budget ({budget_text(self.budgets)})"
        else:
            text = f"{self.test}, every configuration at {budget_text(self.budgets)}" if self.budgets else self.test
        return f"{text}, {self.scope}" if self.scope else text

    def p_text(self) -> str:
        """``p=0.012`` or, corrected, ``p=0.012, 0.105 after Holm's correction over 9 tests``."""
        if self.adjusted_p is None or math.isnan(self.p_value):
            return fmt_p(self.p_value)
        corrected = fmt_p(self.adjusted_p).removeprefix("p=")
        return f"{fmt_p(self.p_value)}, {corrected} after Holm's correction over {self.family} tests"


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error at ``ALPHA`` over all of them).

    Sorted ascending, the i-th of m is multiplied by m - i (i from 0), and each adjusted value is
    at least the one before it; NaN entries are left out of the family.
    """
    finite = sorted(((p, k) for k, p in p_values.items() if not math.isnan(p)))
    out, running, m = {}, 0.0, len(finite)
    for i, (p, key) in enumerate(finite):
        running = max(running, min(1.0, (m - i) * p))
        out[key] = running
    return out


def compare(groups: dict[str, pd.Index], ranks: pd.Series, budgets: pd.Series) -> GroupTest:
    """Test whether the within-budget ``ranks`` (``budget_ranks``) differ between the row groups."""
    from scipy.stats import kruskal, mannwhitneyu

    ranks = ranks.dropna()
    samples = {k: ranks.loc[pd.Index(g).intersection(ranks.index)].to_numpy(float) for k, g in groups.items()}
    samples = {k: v for k, v in samples.items() if len(v)}
    rows = pd.Index([]).append([pd.Index(g).intersection(ranks.index) for g in groups.values()])
    used = budgets.reindex(rows).dropna().unique().tolist()
    test = GroupTest(test=MANN_WHITNEY if len(samples) == 2 else KRUSKAL, p_value=math.nan,
                     n=sum(len(v) for v in samples.values()),
                     mean_rank={k: float(v.mean()) for k, v in samples.items()},
                     sizes={k: len(v) for k, v in samples.items()}, budgets=sorted(used))
    pooled = np.concatenate(list(samples.values())) if samples else np.array([])
    if len(samples) < 2 or np.unique(pooled).size < 2:
        return test
    if len(samples) == 2:
        a, b = samples.values()
        test.p_value = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    else:
        test.p_value = float(kruskal(*samples.values()).pvalue)
    return test


def choice_verdict(question: str, groups: dict[str, pd.Index], values: pd.Series, budgets: pd.Series,
                   higher_is_better: bool, min_n: int, note: str = "",
                   adjust: Callable[[str, GroupTest], None] | None = None) -> tuple[Verdict, GroupTest | None]:
    """Winner (p < ALPHA), no clear difference, or not enough data, over groups of >= ``min_n`` configurations.

    Ranks are taken among all configurations of all groups (also those too small to be
    tested), so that the report's per-value tables show the same mean ranks as the test.
    ``adjust(question, test)`` may set the test's corrected p (``GroupTest.adjusted_p``) before the
    verdict is decided; the verdict then carries that p.
    """
    known = values.dropna().index
    finished = {k: pd.Index(g).intersection(known) for k, g in groups.items()}
    eligible = {k: g for k, g in finished.items() if len(g) >= min_n}
    total = sum(len(g) for g in finished.values())
    if len(eligible) < 2:
        reason = f"fewer than two choices with {min_n} or more finished configurations"
        return Verdict(question, NOT_ENOUGH_DATA, n=total, note="; ".join(filter(None, [reason, note]))), None
    rows = pd.Index([]).append(list(finished.values())).unique()
    test = compare(eligible, budget_ranks(values.loc[rows], budgets, higher_is_better), budgets)
    if adjust is not None:
        adjust(question, test)
    groups_data = {k: {"n": test.sizes.get(k, 0), "mean_rank": test.mean_rank.get(k)} for k in eligible}
    if math.isnan(test.p_value):
        reason = "every configuration ranks the same within its budget"
        return Verdict(question, NO_CLEAR_DIFFERENCE, test=test.test, n=test.n, groups=groups_data,
                       note="; ".join(filter(None, [reason, note]))), test
    stratum_note = f"ranked within budgets {budget_text(test.budgets)}" if test.stratified else ""
    corrected = (f"Holm-adjusted over {test.family} tests (uncorrected {fmt_p(test.p_value)})"
                 if test.adjusted_p is not None else "")
    full_note = "; ".join(filter(None, [stratum_note, test.scope, corrected, note]))
    if test.clear:
        return Verdict(question, WINNER, winner=test.leader, test=test.test, p_value=test.decisive_p, n=test.n,
                       groups=groups_data, note=full_note), test
    return Verdict(question, NO_CLEAR_DIFFERENCE, test=test.test, p_value=test.decisive_p, n=test.n,
                   groups=groups_data, note=full_note), test


__all__ = ["KRUSKAL", "MANN_WHITNEY", "GroupTest", "budget_ranks", "choice_verdict", "compare", "holm"]
