"""The ablation's rounds: pick each side's learning rate, run the verdict seeds, add seeds where power is short.

1. Rate selection (``ablate.retune_rate``): every configuration (the best one and each variant) at
   every rate of its optimizer's grid, ``ablate.rate_seeds`` selection seeds each, for
   ``ablate.rate_epochs``; each keeps the rate with the best mean validation accuracy
   (``pipeline.ablation.rates``).
2. Verdict runs: every configuration at its chosen rate with the first ``ablate.seeds`` seeds.
3. Power (an internal pilot, as in a sample-size re-estimation): from round 2's paired differences
   (variant - best) the seed-to-seed spread is estimated, and a variant gets the seeds a paired
   t-test needs to find a difference of ``ablate.min_effect`` with probability ``ablate.power``,
   at most ``ablate.max_seeds`` (the best configuration runs the most any variant needs, so every
   pair stays matched). The verdicts then use all the seeds, and state the power reached. Only the
   spread is looked at between rounds, never the difference itself, so adding seeds does not bias
   the test towards a verdict.

With ``ablate.time_budget`` the stage sizes the plan before round 1 (``pipeline.ablation.budget``)
and round 3 adds only the extra seeds that fit in what is left.

``train(variants, seeds, epochs, label)`` does the runs (in this process or in workers) and returns
their records; this module is plain Python and decides only what to run. The rates of one
configuration share its traced model (``learning_rate`` is a graph-free key), so the grid costs
runs, not traces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.ablation.budget import extra_seeds_that_fit
from pipeline.ablation.plan import BEST_NAME, METRIC, Variant, ablation_seeds, config_key
from pipeline.ablation.rates import choose_rates, rate_variants, selection_seeds
from pipeline.ablation.stats import BEST, aligned, label, paired_difference, scores_by_seed, seeds_needed
from pipeline.questions import GAP, ablation_questions
from pipeline.time_budget import TimeBudget

Train = Callable[[Sequence[Variant], Any, int, str], list[dict[str, Any]]]


@dataclass
class Outcome:
    runs: list[dict[str, Any]] = field(default_factory=list)
    variants: list[Variant] = field(default_factory=list)  # at their chosen rates
    rates: dict[str, dict[str, Any]] | None = None  # base name -> grid, scores, rate, edge (None: not re-tuned)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # variant name -> its verdict seeds
    needed: dict[str, int] = field(default_factory=dict)  # variant name -> seeds the power rule asked for
    power_dropped: list[str] = field(default_factory=list)  # variants whose extra seeds did not fit the budget


def _key(variant: Variant) -> tuple[str | None, str | None]:
    return BEST if variant.dimension is None else (variant.dimension, label(variant.value))


def seeds_for_power(runs: Sequence[Mapping[str, Any]], variants: Sequence[Variant], min_effect: float,
                    target: float, low: int, high: int) -> dict[str, int]:
    """Per variant name, the seeds its comparison with the best needs (``low`` when the pilot cannot say);
    the best configuration gets the most any variant needs."""
    tables = {column: scores_by_seed(runs, column) for column in (METRIC, "gap")}
    needed = {}
    for variant in variants:
        if variant.dimension is None:
            continue
        n = low
        # the metrics its questions compare: accuracy, and the gap where a question asks about it
        columns = [METRIC, *(["gap"] if any(q.metric == GAP for q in ablation_questions(variant.dimension)) else [])]
        for table in (tables[column] for column in columns):
            if _key(variant) in table and BEST in table:
                pair = aligned({"v": table[_key(variant)], "b": table[BEST]})
                if len(pair["v"]) >= 2 and min_effect > 0:
                    sd = paired_difference(pair["v"], pair["b"]).sd
                    n = max(n, seeds_needed(sd, min_effect, target, low, high))
        needed[variant.name] = n
    needed.update({v.name: max(needed.values(), default=low) for v in variants if v.dimension is None})
    # variants with one configuration are trained once: they share the most seeds any of them needs
    by_config: dict[str, int] = {}
    for variant in variants:
        key = config_key(variant.values)
        by_config[key] = max(by_config.get(key, low), needed[variant.name])
    return {v.name: by_config[config_key(v.values)] for v in variants}


def run_experiment(variants: Sequence[Variant], config: Any, seed: int, epochs: int, train: Train,
                   budget: TimeBudget | None = None) -> Outcome:
    """The three rounds for ``variants`` (``plan.plan_variants``) under ``config`` (``AblateConfig``).

    With a limited ``budget`` (the plan already sized to it, ``pipeline.ablation.budget.fit_plan``), the
    power rule's extra seeds are added only where they fit in what is left, priced by the verdict runs.
    """
    out = Outcome()
    variants = list(variants)
    if len(variants) < 2:  # the best configuration alone (every variant skipped or left out): nothing to compare
        out.variants = variants
        return out
    if config.retune_rate:
        grids = config.learning_rates.model_dump()
        picks = rate_variants(variants, grids)
        out.runs += train(picks, selection_seeds(seed, config.rate_seeds), config.rate_epochs or epochs,
                          "learning-rate selection")
        own = float(variants[0].values["learning_rate"])
        out.rates = choose_rates(variants, out.runs, grids, own)
        variants = [v.at_rate(out.rates[v.base_name]["rate"]) for v in variants]
    out.variants = variants
    first = ablation_seeds(seed, config.seeds)
    started = time.monotonic()
    verdict_runs = train(variants, first, epochs, "verdict runs")
    per_run = (time.monotonic() - started) / max(len(verdict_runs), 1)
    out.runs += verdict_runs
    out.seeds = {v.name: list(first) for v in variants}
    if config.max_seeds > config.seeds:
        out.needed = seeds_for_power(out.runs, variants, config.min_effect, config.power, config.seeds,
                                     config.max_seeds)
        extra = {name: ablation_seeds(seed, n)[config.seeds:] for name, n in out.needed.items() if n > config.seeds}
        if extra and budget is not None and budget.limited:
            extra, out.power_dropped = extra_seeds_that_fit(extra, per_run, budget.left() or 0.0, BEST_NAME)
        if extra:
            more = [v for v in variants if v.name in extra]
            out.runs += train(more, extra, epochs, "seeds for power")
            for name, seeds in extra.items():
                out.seeds[name] += seeds
    return out


__all__ = ["Outcome", "Train", "run_experiment", "seeds_for_power"]
