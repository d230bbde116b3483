"""``ablate.time_budget``: an ablation sized to its wall-clock budget before it starts.

An ablation run cut short would bias its comparison (one side trained fewer epochs), so the budget
is not spent by stopping runs: the plan is sized up front instead. What a run costs comes from the
search: the best trial's seconds per epoch in ``trials.csv`` (on the same data, the same machine),
plus a fixed start-up per run. The best configuration and then the variants in plan order (the
order of ``ablate.dimensions``, then ``ablate.baselines``) are kept while their learning-rate
selection and verdict runs fit; the rest are left out, each named with the reason. Later, the
seeds the power rule asks for are added only where they fit in what is left, now priced by what
the runs so far really took. Plain Python (no TensorFlow).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.ablation.plan import Variant
from pipeline.ablation.rates import family

# Build, trace and tear down one run (digits, 2 cores): measured 2-3 s; the estimate need not be exact,
# it decides which comparisons to start.
RUN_SETUP_SECONDS = 3.0
REASON = "left out by ablate.time_budget"


def seconds_per_epoch(trials_csv: Path, trial_id: Any) -> float | None:
    """The search's seconds per epoch for ``trial_id`` (``trials.csv``'s ``seconds_per_epoch``); None when unknown."""
    if not Path(trials_csv).is_file():
        return None
    with Path(trials_csv).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if str(row.get("trial_id")) == str(trial_id):
                try:
                    value = float(row.get("seconds_per_epoch") or "nan")
                except ValueError:
                    return None
                return value if value > 0 else None
    return None


def variant_cost(variant: Variant, config: Any, epochs: int, per_epoch: float) -> float:
    """Wall seconds of one variant's runs: its learning-rate selection (when re-tuned) and verdict seeds.

    ``workers`` processes share the cores, so they add runs side by side but not speed: the runs' epochs
    are summed at the search's (all-core) rate, their start-ups divided among the workers.
    """
    runs = [(config.seeds, epochs)]
    if config.retune_rate:
        grid = getattr(config.learning_rates, family(variant.values.get("optimizer")))
        runs.append((len(grid) * config.rate_seeds, config.rate_epochs or epochs))
    return sum(n * (e * per_epoch + RUN_SETUP_SECONDS / max(config.workers, 1)) for n, e in runs)


def fit_plan(variants: Sequence[Variant], config: Any, epochs: int, per_epoch: float,
             seconds: float) -> tuple[list[Variant], list[dict[str, Any]], float]:
    """(the variants that fit, the left-out ones as ``skipped`` entries, the kept plan's estimated seconds).

    The best configuration (``variants[0]``) is always kept: without it nothing compares. The others are
    kept in order while the running total fits; one that does not is left out and the next ones are
    still tried (a cheaper one may fit).
    """
    kept, left_out = [variants[0]], []
    total = variant_cost(variants[0], config, epochs, per_epoch)
    for variant in variants[1:]:
        cost = variant_cost(variant, config, epochs, per_epoch)
        if total + cost <= seconds:
            kept.append(variant)
            total += cost
        else:
            left_out.append({"dimension": variant.dimension, "value": variant.value,
                             "reason": f"{REASON} (~{cost:.0f} s more than the {max(seconds - total, 0):.0f} s "
                                       "left in the plan)"})
    return kept, left_out, total


def extra_seeds_that_fit(extra: Mapping[str, Sequence[int]], seconds_per_run: float, left: float,
                         reference: str) -> tuple[dict[str, list[int]], list[str]]:
    """The power rule's extra seeds (variant name -> seeds) that fit in ``left`` seconds at ``seconds_per_run``;
    and the names whose extra seeds were dropped.

    ``reference`` (the best configuration) is priced first: a variant's extra seed is compared with the
    reference's run at that seed, so without the reference's extra seeds no variant's are run. The
    variants follow in order while they fit.
    """
    ordered = sorted(extra, key=lambda name: name != reference)
    kept: dict[str, list[int]] = {}
    for name in ordered:
        cost = len(extra[name]) * seconds_per_run
        if cost <= left:
            kept[name] = list(extra[name])
            left -= cost
        elif name == reference:
            break  # no room for the reference's seeds: no variant's can be compared
    return kept, [name for name in ordered if name not in kept]


__all__ = ["REASON", "extra_seeds_that_fit", "fit_plan", "seconds_per_epoch", "variant_cost"]
