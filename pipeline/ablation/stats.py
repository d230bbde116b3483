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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from pipeline.ablation.plan import BASELINE, VERDICT, label
from pipeline.questions import CHANCE, FAMILIES, GAP, Question, ablation_questions, verdict_id
from pipeline.verdicts import (
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
# Accuracies are counts over a few hundred images; rounding the differences keeps 3/270 - 2/270
# from differing in the last bit between seeds (which would turn "always the same" into noise).
DECIMALS = 10


def power(n: int, sd: float, effect: float, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test at ``alpha`` over ``n`` seeds finds a true mean difference
    of ``effect`` when the differences have standard deviation ``sd`` (the noncentral t distribution).

    No spread (``sd`` 0) finds any non-zero effect: 1.0. Fewer than 2 seeds test nothing: 0.0.
    """
    if n < 2:
        return 0.0
    if sd <= 0.0:
        return 1.0 if effect > 0 else alpha
    shift = effect / sd * math.sqrt(n)
    if shift > 100:  # beyond the noncentral t's numerics (nan); the power is 1 to many digits long before
        return 1.0
    critical = stats.t.ppf(1 - alpha / 2, n - 1)
    upper = float(stats.nct.sf(critical, n - 1, shift))
    # the far tail of a large shift is ~0, but scipy may return nan for it
    lower = float(np.nan_to_num(stats.nct.cdf(-critical, n - 1, shift), nan=0.0))
    return min(1.0, (upper if math.isfinite(upper) else float(shift > critical)) + lower)


def seeds_needed(sd: float, effect: float, target: float, low: int, high: int) -> int:
    """The fewest seeds in ``[low, high]`` whose paired t-test reaches ``target`` power for ``effect``
    (``high`` when none does: the budget caps it, and the power reached is reported)."""
    for n in range(max(2, low), high + 1):
        if power(n, sd, effect) >= target:
            return n
    return max(low, high)


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

    @property
    def sd(self) -> float:
        if self.n < 2:
            return math.nan
        return 0.0 if np.ptp(self.diffs) == 0 else float(np.std(self.diffs, ddof=1))  # no rounding noise

    def power(self, effect: float) -> float:
        """The power this many seeds had to find a difference of ``effect``, at the observed spread."""
        return power(self.n, self.sd, effect)

    def to_dict(self, min_effect: float | None = None) -> dict[str, Any]:
        record = {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "p_value": self.p_value, "n": self.n,
                  "sd": self.sd, "diffs": list(self.diffs), "test": PAIRED_T, "confidence": CONFIDENCE}
        if min_effect:
            record["power"] = self.power(min_effect)
        return record

    def interval(self) -> str:
        return f"{self.mean:+.3f} (95% CI {self.low:+.3f} to {self.high:+.3f})"


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


def _pair_text(label_a: str, label_b: str, pair: Paired, min_effect: float) -> str:
    """``adamw - sgd: +0.031 (95% CI +0.012 to +0.050), power 0.93 for 0.02``: the interval of every effect."""
    text = f"{label_a} - {label_b}: {pair.interval()}"
    return text + (f", power {pair.power(min_effect):.2f} for {min_effect:g}" if min_effect > 0 else "")


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
    parts = [f"mean {metric}: {_means(groups)}", *(_pair_text(best, k, pair, min_effect) for k, pair in pairs.items())
             ] + ([note] if note else [])
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
    parts = [f"mean {metric}: {_means(flat)}", _pair_text(label_a, label_b, pair, min_effect),
             *([note] if note else [])]
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
    """``-0.042 val_accuracy (95% CI -0.061 to -0.023, paired t-test p=0.004, 3 seeds, power 0.81)``."""
    power_text = f", power {stat['power']:.2f}" if stat.get("power") is not None else ""
    return (f"{stat['mean']:+.3f} {metric} (95% CI {stat['ci_low']:+.3f} to {stat['ci_high']:+.3f}, {PAIRED_T} "
            f"{fmt_p(stat['p_value'])}, {stat['n']} seeds{power_text})")


BEST_LABEL = "best configuration"
Key = tuple[str | None, str | None]  # (dimension, value label); (None, None) is the best configuration
BEST: Key = (None, None)


def scores_by_seed(runs: Sequence[Mapping[str, Any]], column: str) -> dict[Key, dict[int, float]]:
    """``column`` of every finished verdict run (the rate-selection runs are not evidence), by variant and seed."""
    found: dict[Key, dict[int, float]] = {}
    for run in runs:
        if run.get("phase", VERDICT) != VERDICT or run.get("status", "FINISHED") != "FINISHED" \
                or run.get(column) is None:
            continue
        key = (run["dimension"], label(run["value"])) if run["dimension"] else BEST
        found.setdefault(key, {})[int(run["seed"])] = float(run[column])
    return found


def aligned(by_seed: Mapping[str, Mapping[int, float]]) -> dict[str, list[float]]:
    """Each group's scores at the seeds every group has (a seed missing on one side cannot be paired)."""
    common = sorted(set.intersection(*(set(scores) for scores in by_seed.values()))) if by_seed else []
    return {name: [scores[s] for s in common] for name, scores in by_seed.items()}


def scores_by_variant(runs: Sequence[Mapping[str, Any]], column: str,
                      seeds: Sequence[int] | None = None) -> dict[Key, list[float]]:
    """``column`` of every finished variant at ``seeds`` (in that order), variants missing one left out;
    ``seeds`` None: each variant's own seeds, in order."""
    found = scores_by_seed(runs, column)
    if seeds is None:
        return {key: [by_seed[s] for s in sorted(by_seed)] for key, by_seed in found.items()}
    return {key: [by_seed[s] for s in seeds] for key, by_seed in found.items() if all(s in by_seed for s in seeds)}


def effects(runs: Sequence[Mapping[str, Any]], seeds: Sequence[int] | None, columns: Sequence[str],
            min_effect: float = 0.0, rates: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Per variant, ``variant - best`` over the seeds both ran, for each of ``columns`` (results.json's ``effects``).

    ``clear``: the difference in the first column is significant and at least ``min_effect``; ``power``: the
    chance that these seeds find a difference of ``min_effect`` at the observed spread. ``rates``
    (``rates.choose_rates``): each side's chosen learning rate is recorded with the effect.
    """
    tables = {column: scores_by_seed(runs, column) for column in columns}
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
                pair_of = aligned({"variant": table[key], "best": table[BEST]})
                if seeds is not None:
                    pair_of = {k: [table[key if k == "variant" else BEST][s] for s in seeds] for k in pair_of}
                if len(pair_of["variant"]) < 2:
                    continue
                pair = paired_difference(pair_of["variant"], pair_of["best"])
                record[column] = {"variant": float(np.mean(pair_of["variant"])),
                                  "best": float(np.mean(pair_of["best"])), **pair.to_dict(min_effect)}
                record.setdefault("clear", pair.clear(min_effect))
        if rates:
            name = f"{key[0]}={key[1]}"
            own, theirs = rates.get("best", {}), next((v for k, v in rates.items() if _same_name(k, name)), {})
            record["rates"] = {"best": own.get("rate"), "variant": theirs.get("rate"),
                               "retuned": bool(own) and bool(theirs)}
        out.append(record)
    return out


def _same_name(variant_name: str, name: str) -> bool:
    """``dropout=0.0`` (a Variant's name) is the variant labelled ``dropout=0`` in the tables."""
    dimension, _, value = variant_name.partition("=")
    return f"{dimension}={label(_typed(value))}" == name


def _typed(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    number = _numeric(text)
    return text if number is None else number


def _numeric(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _rate_note(rates: Mapping[str, Mapping[str, Any]] | None, sides: Mapping[str, str]) -> str:
    """``learning rate re-tuned per side: best configuration 0.003, sgd 0.1`` (``sides``: label -> variant name)."""
    if not rates:
        return "learning rate not re-tuned (ablate.retune_rate false): every side at the best configuration's"
    found = {side: rates[name] for side, name in sides.items() if name in rates}
    if not found:
        return ""
    edge = [side for side, info in found.items() if info.get("edge")]
    text = "learning rate re-tuned per side: " + ", ".join(f"{side} {info['rate']:g}" for side, info in found.items())
    return text + (f" (at the grid's edge: {', '.join(edge)})" if edge else "")


def _name_of(dimension: str | None, value_label: str, names: Sequence[str]) -> str:
    """The Variant name of a (dimension, value label) among ``names`` (the rates' keys)."""
    if dimension is None:
        return "best"
    return next((n for n in names if _same_name(n, f"{dimension}={value_label}")), f"{dimension}={value_label}")


def _answer(question: Question, by_seed: Mapping[str, Mapping[int, float]], own: str, min_effect: float,
            num_classes: int, metric: str, note: str) -> Verdict | None:
    """One question's verdict from its groups (value label -> scores by seed; ``own`` is the best's value)."""
    if question.ablation == CHANCE:
        scores = by_seed.get(question.value or "")
        return chance_verdict(question.name, list(scores.values()), num_classes, metric) if scores else None
    groups = aligned(by_seed)
    if not groups or len(next(iter(groups.values()))) < 2:
        return None
    shown = "train-validation accuracy gap" if question.metric == GAP else metric
    if question.ablation == FAMILIES and question.family is not None:
        families: dict[str, dict[str, list[float]]] = {}
        for value, scores in groups.items():
            if (member := question.family(value)) is not None:
                families.setdefault(member, {})[value] = scores
        if len(families) != 2:
            return None
        # the family of the best configuration's own value first, as the search's verdicts list it
        ordered = dict(sorted(families.items(), key=lambda item: own not in item[1]))
        return family_verdict(question.name, ordered, min_effect, higher_is_better=question.higher_is_better,
                              metric=shown, note=note)
    return choice_verdict(question.name, groups, min_effect, higher_is_better=question.higher_is_better,
                          metric=shown, note=note)


def ablation_verdicts(runs: Sequence[Mapping[str, Any]], best_values: Mapping[str, Any], seeds: Sequence[int] | None,
                      num_classes: int, min_effect: float, metric: str = "val_accuracy",
                      baselines: Mapping[str, Mapping[str, Any]] | None = None,
                      rates: Mapping[str, Mapping[str, Any]] | None = None) -> list[Verdict]:
    """One verdict per question the ablated dimensions answer (``evidence: "ablation"``), never two for one.

    A dimension answers the questions ``pipeline.questions`` declares for it (init: ``zero_init`` and
    ``he_vs_glorot``; lr_schedule: ``lr_schedule.vs_constant``; regularizer/dropout: the
    train-validation gap, lower is better), and, where none of them is about ``metric`` (none declared,
    or only the gap's), ``hp.<key>`` (or its own question, ``optimizer``, ``architecture``): which value
    is best on ``metric``. So dropout answers both "does it shrink the gap" and "which dropout", from
    the same runs, two comparisons on two measures; the report takes both instead of the search's
    observational ``hp.dropout``. Each baseline is ``baseline.<name>``. The
    groups are compared at the seeds all of them ran; ``rates`` adds each side's learning rate to the note.
    """
    tables = {column: scores_by_seed(runs, column) for column in (metric, GAP)}
    if BEST not in tables[metric]:
        return []
    if seeds is not None:
        tables = {c: {k: {s: v[s] for s in seeds if s in v} for k, v in t.items()} for c, t in tables.items()}
    names = list(rates or {})
    verdicts: list[Verdict] = []
    for dim in dict.fromkeys(key[0] for key in tables[metric] if key != BEST):
        if dim == BASELINE:
            for name in (value for d, value in tables[metric] if d == BASELINE):
                changes = ", ".join(f"{k} {label(v)}" for k, v in (baselines or {}).get(name, {}).items())
                note = "; ".join(filter(None, [f"{name}: {changes or '?'}, the rest as the best configuration",
                                               _rate_note(rates, {BEST_LABEL: "best", name: f"baseline={name}"})]))
                found = choice_verdict(f"baseline.{name}", aligned({BEST_LABEL: tables[metric][BEST],
                                                                     name: tables[metric][(BASELINE, name)]}),
                                       min_effect, metric=metric, note=note)
                verdicts += [found] if found else []
            continue
        own = label(best_values.get(dim))
        questions = ablation_questions(dim)
        if all(q.metric == GAP for q in questions):  # none, or only the gap's: which value is best, too
            questions = [*questions, Question(verdict_id(dim), dim, f"Which {dim}?", "choice")]
        for question in questions:
            if any(label(best_values.get(key)) != value for key, value in question.requires):
                continue
            table = tables[GAP if question.metric == GAP else metric]
            if BEST not in table:
                continue
            by_seed = {own: table[BEST], **{value: s for (d, value), s in table.items() if d == dim}}
            compared = [v for v in by_seed if question.family is None or question.family(v) is not None]
            sides = {value: _name_of(None if value == own else dim, value, names) for value in compared}
            found = _answer(question, by_seed, own, min_effect, num_classes, metric,
                            "" if question.ablation == CHANCE else _rate_note(rates, sides))
            verdicts += [found] if found else []
    return verdicts


__all__ = ["BEST", "CHANCE_MARGIN", "CONFIDENCE", "PAIRED_T", "Paired", "ablation_verdicts", "aligned", "best_of",
           "chance_verdict", "choice_verdict", "describe", "effects", "family_verdict", "label", "paired_difference",
           "power", "scores_by_seed", "scores_by_variant", "seeds_needed", "verdict_id"]
