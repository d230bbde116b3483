"""Seed-matched comparisons of an ablation's runs, and the verdicts they support (numpy + scipy, no TensorFlow).

Each variant changes one dimension of the best configuration and is trained with the same
seeds as the best configuration itself: seed ``s`` fixes the data order, the dropout and
augmentation draws and the initial weights of both. So the unit of comparison is a seed, and
the difference ``variant - best`` at each seed is one observation of the variant's effect.

Tests: the paired t-test (``scipy.stats.ttest_1samp`` on the differences, the same as
``ttest_rel``), with a t-based 95% interval. With 3 seeds the Wilcoxon signed-rank test cannot
go below p = 0.25 (two-sided), so it could never name a winner; the t-test can, when the
differences agree in sign and size. A winner also needs a mean difference of at least
``min_effect``: the seeds share one validation split, so a difference of one or two images can
be perfectly consistent across seeds and still say nothing about other data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from pipeline.report.verdicts import (
    ABLATION,
    ABOVE_CHANCE,
    ALPHA,
    AT_CHANCE,
    NO_CLEAR_DIFFERENCE,
    WINNER,
    Verdict,
    fmt_p,
)

CONFIDENCE = 0.95
# Mean accuracy within this much of 1/classes counts as "at chance" (the report's rule for the search, too).
CHANCE_MARGIN = 0.05
PAIRED_T = "paired t-test"
# Dimensions the guide asks about by name: their verdict id is the question's (pipeline.report.questions.OWN_QUESTION);
# every other dimension answers ``hp.<name>``.
OWN_QUESTION = ("optimizer", "architecture", "lr_schedule", "learning_rate")
# Accuracies are counts over a few hundred images; rounding the differences keeps 3/270 - 2/270
# from differing in the last bit between seeds (which would turn "always the same" into noise).
DECIMALS = 10


def verdict_id(name: str) -> str:
    return name if name in OWN_QUESTION else f"hp.{name}"


@dataclass(frozen=True)
class Paired:
    """``a - b`` over matched seeds: mean, interval, two-sided p of the paired t-test."""

    mean: float
    low: float
    high: float
    p_value: float
    n: int
    diffs: tuple[float, ...]

    def clear(self, min_effect: float) -> bool:
        """Significant at ``ALPHA`` and at least ``min_effect`` in size."""
        return self.p_value < ALPHA and abs(self.mean) >= min_effect

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "p_value": self.p_value, "n": self.n,
                "diffs": list(self.diffs), "test": PAIRED_T, "confidence": CONFIDENCE}


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Paired:
    """The paired t-test of ``a - b`` (same seeds, same order) with its ``confidence`` interval.

    Identical differences have no spread: p = 1 when they are all zero, p = 0 otherwise (the
    t statistic is infinite), and the interval is the point itself.
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"paired samples need the same length, got {a_arr.shape} and {b_arr.shape}")
    diffs = np.round(a_arr - b_arr, DECIMALS)
    n = len(diffs)
    if n < 2:
        raise ValueError("a paired test needs at least 2 seeds")
    mean = float(diffs.mean())
    if float(np.ptp(diffs)) == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
        return Paired(mean, mean, mean, p, n, tuple(map(float, diffs)))
    result = stats.ttest_1samp(diffs, 0.0)
    interval = result.confidence_interval(confidence)
    return Paired(mean, float(interval.low), float(interval.high), float(result.pvalue), n, tuple(map(float, diffs)))


Groups = Mapping[str, Sequence[float]]  # value label -> one score per seed, seeds in the same order everywhere


def _means(groups: Groups) -> str:
    return ", ".join(f"{k} {np.mean(v):.3f}" for k, v in groups.items())


def best_of(groups: Groups, higher_is_better: bool = True) -> str:
    sign = 1.0 if higher_is_better else -1.0
    return max(groups, key=lambda k: sign * float(np.mean(groups[k])))


def choice_verdict(question: str, groups: Groups, min_effect: float, *, higher_is_better: bool = True,
                   metric: str = "val_accuracy", note: str = "") -> Verdict | None:
    """Which value is best: the best mean must beat every other value clearly (seed-matched).

    An intersection-union test: "best beats all" holds only if each pairwise test rejects, so the
    largest of the pairwise p-values is the test's p and needs no multiplicity correction.
    None when fewer than two values were run.
    """
    if len(groups) < 2:
        return None
    best = best_of(groups, higher_is_better)
    pairs = {k: paired_difference(groups[best], v) for k, v in groups.items() if k != best}
    p = max(pair.p_value for pair in pairs.values())
    n = len(groups) * len(next(iter(groups.values())))
    test = f"{PAIRED_T}s, {best} vs each" if len(pairs) > 1 else PAIRED_T
    weakest = min(pairs.values(), key=lambda pair: abs(pair.mean))
    parts = [f"mean {metric}: {_means(groups)}"] + ([note] if note else [])
    if all(pair.clear(min_effect) for pair in pairs.values()):
        return Verdict(question, WINNER, winner=best, test=test, p_value=p, n=n, evidence=ABLATION, unit="runs",
                       note="; ".join(parts), groups=_groups_record(groups))
    if p < ALPHA:
        parts.append(f"smallest difference {abs(weakest.mean):.3f} < ablate.min_effect {min_effect:g}")
    return Verdict(question, NO_CLEAR_DIFFERENCE, test=test, p_value=p, n=n, evidence=ABLATION, unit="runs",
                   note="; ".join(parts), groups=_groups_record(groups))


def family_verdict(question: str, families: Mapping[str, Groups], min_effect: float, *, higher_is_better: bool = True,
                   metric: str = "val_accuracy", note: str = "") -> Verdict | None:
    """Family A vs family B (He vs Glorot, a schedule vs constant, with vs without a regularizer).

    Each family is represented by its best member; with several members the p-value is
    Bonferroni-corrected for the pairs that could have been picked. None unless both families ran.
    """
    if len(families) != 2 or not all(families.values()):
        return None
    picks = {label: best_of(members, higher_is_better) for label, members in families.items()}
    (label_a, members_a), (label_b, members_b) = families.items()
    pair = paired_difference(members_a[picks[label_a]], members_b[picks[label_b]])
    tries = len(members_a) * len(members_b)
    p = min(1.0, pair.p_value * tries)
    test = PAIRED_T + (f", Bonferroni x{tries}" if tries > 1 else "")
    better_a = pair.mean > 0 if higher_is_better else pair.mean < 0
    n = (len(members_a) + len(members_b)) * pair.n
    flat = {f"{label}: {value}": scores for label, members in families.items() for value, scores in members.items()}
    parts = [f"mean {metric}: {_means(flat)}"] + ([note] if note else [])
    if p < ALPHA and abs(pair.mean) >= min_effect:
        return Verdict(question, WINNER, winner=label_a if better_a else label_b, test=test, p_value=p, n=n,
                       evidence=ABLATION, unit="runs", note="; ".join(parts), groups=_groups_record(flat))
    if p < ALPHA:
        parts.append(f"difference {abs(pair.mean):.3f} < ablate.min_effect {min_effect:g}")
    return Verdict(question, NO_CLEAR_DIFFERENCE, test=test, p_value=p, n=n, evidence=ABLATION, unit="runs",
                   note="; ".join(parts), groups=_groups_record(flat))


def chance_verdict(question: str, scores: Sequence[float], num_classes: int, metric: str = "val_accuracy") -> Verdict:
    """A rule, not a test: the mean accuracy of the runs within ``CHANCE_MARGIN`` of 1/classes."""
    chance = 1 / num_classes
    mean, best = float(np.mean(scores)), float(np.max(scores))
    kind = AT_CHANCE if mean <= chance + CHANCE_MARGIN else ABOVE_CHANCE
    return Verdict(question, kind, test=f"chance margin {CHANCE_MARGIN}", n=len(scores), evidence=ABLATION,
                   unit="runs", note=f"mean {metric} {mean:.3f} (best {best:.3f}), chance 1/{num_classes} = "
                                     f"{chance:.3f}", groups={"zeros": {"n": len(scores), "mean": mean}})


def _groups_record(groups: Groups) -> dict[str, dict[str, Any]]:
    return {k: {"n": len(v), "mean": float(np.mean(v)), "scores": [float(s) for s in v]} for k, v in groups.items()}


def describe(stat: Mapping[str, Any], metric: str) -> str:
    """``-0.042 val_accuracy (95% CI -0.061 to -0.023, paired t-test p=0.004)`` from ``Paired.to_dict()``."""
    return (f"{stat['mean']:+.3f} {metric} (95% CI {stat['ci_low']:+.3f} to {stat['ci_high']:+.3f}, {PAIRED_T} "
            f"{fmt_p(stat['p_value'])})")


def label(value: Any) -> str:
    """One spelling per value (``true``, ``0.25``, ``he_normal``), as the report writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


BASELINE = "baseline"  # the dimension of the named baselines (pipeline.evaluation.ablation.BASELINE)
BEST_LABEL = "best configuration"
Key = tuple[str | None, str | None]  # (dimension, value label); (None, None) is the best configuration
BEST: Key = (None, None)


def scores_by_variant(runs: Sequence[Mapping[str, Any]], column: str, seeds: Sequence[int]) -> dict[Key, list[float]]:
    """``column`` of every finished variant, one score per seed in the order of ``seeds``.

    A variant missing a seed (interrupted, failed) is left out: it cannot be paired.
    """
    found: dict[Key, dict[int, float]] = {}
    for run in runs:
        if run.get("status", "FINISHED") != "FINISHED" or run.get(column) is None:
            continue
        key = (run["dimension"], label(run["value"])) if run["dimension"] else BEST
        found.setdefault(key, {})[int(run["seed"])] = float(run[column])
    return {key: [by_seed[s] for s in seeds] for key, by_seed in found.items() if all(s in by_seed for s in seeds)}


def effects(runs: Sequence[Mapping[str, Any]], seeds: Sequence[int], columns: Sequence[str],
            min_effect: float = 0.0) -> list[dict[str, Any]]:
    """Per variant, ``variant - best`` over matched seeds for each of ``columns`` (results.json's ``effects``).

    ``clear``: the difference in the first column is significant and at least ``min_effect``.
    """
    tables = {column: scores_by_variant(runs, column, seeds) for column in columns}
    first = tables[columns[0]]
    if BEST not in first:
        return []
    out = []
    for key in first:
        if key == BEST:
            continue
        record: dict[str, Any] = {"dimension": key[0], "value": key[1]}
        for column, table in tables.items():
            if key in table and BEST in table:
                pair = paired_difference(table[key], table[BEST])
                record[column] = {"variant": float(np.mean(table[key])), "best": float(np.mean(table[BEST])),
                                  **pair.to_dict()}
                record.setdefault("clear", pair.clear(min_effect))
        out.append(record)
    return out


def _numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def ablation_verdicts(runs: Sequence[Mapping[str, Any]], best_values: Mapping[str, Any], seeds: Sequence[int],
                      num_classes: int, min_effect: float, metric: str = "val_accuracy",
                      baselines: Mapping[str, Mapping[str, Any]] | None = None) -> list[Verdict]:
    """The guide's questions that the ablated dimensions answer, as ``evidence: "ablation"`` verdicts.

    Per dimension, the best configuration's value and the variants' values are compared on
    ``metric``; the initializer also answers zero_init and he_vs_glorot, the schedule "a schedule vs
    constant", and regularizer/dropout the train-validation gap (lower is better there). Each
    baseline (dimension ``baseline``) is compared with the best configuration as ``baseline.<name>``.
    """
    table = scores_by_variant(runs, metric, seeds)
    gaps = scores_by_variant(runs, "gap", seeds)
    if BEST not in table:
        return []
    dimensions = list(dict.fromkeys(key[0] for key in table if key != BEST))
    verdicts: list[Verdict] = []
    for dim in dimensions:
        if dim == BASELINE:
            for name in (value for d, value in table if d == BASELINE):
                changes = ", ".join(f"{k} {label(v)}" for k, v in (baselines or {}).get(name, {}).items())
                found = choice_verdict(f"baseline.{name}", {BEST_LABEL: table[BEST], name: table[(BASELINE, name)]},
                                       min_effect, metric=metric,
                                       note=f"{name}: {changes or '?'}, the rest as the best configuration")
                verdicts += [found] if found else []
            continue
        own = label(best_values.get(dim))
        groups = {own: table[BEST], **{value: s for (d, value), s in table.items() if d == dim}}
        if dim == "init":
            if "zeros" in groups:
                verdicts.append(chance_verdict("zero_init", groups["zeros"], num_classes, metric))
            if label(best_values.get("activation", "relu")) == "relu":
                found = family_verdict("he_vs_glorot", {
                    "He": {k: v for k, v in groups.items() if k.startswith("he_")},
                    "Glorot": {k: v for k, v in groups.items() if k.startswith("glorot_")},
                }, min_effect, metric=metric, note="relu")
                verdicts += [found] if found else []
        if dim == "lr_schedule":
            found = family_verdict("lr_schedule.vs_constant", {
                "a schedule": {k: v for k, v in groups.items() if k != "constant"},
                "constant": {k: v for k, v in groups.items() if k == "constant"},
            }, min_effect, metric=metric)
            verdicts += [found] if found else []
        if dim in ("regularizer", "dropout") and BEST in gaps:
            by_gap = {own: gaps[BEST], **{value: s for (d, value), s in gaps.items() if d == dim}}
            without = {k: v for k, v in by_gap.items() if k == "none" or _numeric(k) == 0.0}
            found = family_verdict(f"regularization_gap.{dim}", {
                f"with {dim}": {k: v for k, v in by_gap.items() if k not in without},
                f"without {dim}": without,
            }, min_effect, higher_is_better=False, metric="train-validation accuracy gap")
            verdicts += [found] if found else []
        # the best configuration's value comes first in the note's means
        found = choice_verdict(verdict_id(dim), groups, min_effect, metric=metric)
        verdicts += [found] if found else []
    return verdicts


__all__ = ["BEST", "CHANCE_MARGIN", "CONFIDENCE", "PAIRED_T", "Paired", "ablation_verdicts", "best_of",
           "chance_verdict", "choice_verdict", "describe", "effects", "family_verdict", "label", "paired_difference",
           "scores_by_variant", "verdict_id"]
