"""Which runs an ablation makes: the variants of the best configuration, and how runs can share work.

Plain Python (no TensorFlow): the stage plans here, and hands the runs to
``pipeline.ablation.runs`` in this process or to worker processes
(``pipeline.ablation.workers``). A run is a ``Variant`` at a seed; a variant of phase ``RATE``
is one point of the learning-rate grid (``pipeline.ablation.rates``), named ``<variant>@lr=<rate>``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.questions import ablation_questions
from pipeline.registry import schedule_knobs

BEST_NAME = "best"
BASELINE = "baseline"  # the dimension of a named baseline
# The decision metric. Validation, not test: the test split stays out of every decision, so the
# evaluate stage's test accuracy remains an unbiased estimate (test_accuracy is recorded, for information).
METRIC = "val_accuracy"
SCORE_COLUMNS = ("val_accuracy", "test_accuracy", "gap")
RATE, VERDICT = "rate", "verdict"  # a run that picks a variant's learning rate, or one that the verdicts compare
# The seeds of every variant, or of each variant by name (the power rule adds seeds where the noise needs them).
SeedPlan = Sequence[int] | Mapping[str, Sequence[int]]


def seeds_of(plan: SeedPlan, name: str) -> list[int]:
    return list(plan.get(name, ())) if isinstance(plan, Mapping) else list(plan)


@dataclass(frozen=True)
class Variant:
    """The best configuration (``dimension`` None), it with ``dimension`` set to ``value``, or a named
    baseline (``dimension`` "baseline", ``value`` its name) that changes several keys at once."""

    dimension: str | None
    value: Any
    values: dict[str, Any]
    changes: dict[str, Any]
    phase: str = VERDICT

    @property
    def base_name(self) -> str:
        return BEST_NAME if self.dimension is None else f"{self.dimension}={self.value}"

    @property
    def name(self) -> str:
        return self.base_name if self.phase == VERDICT else f"{self.base_name}@lr={self.values['learning_rate']:g}"

    def at_rate(self, rate: float, phase: str = VERDICT) -> Variant:
        """This variant trained at learning rate ``rate`` (the other values unchanged)."""
        return Variant(self.dimension, self.value, {**self.values, "learning_rate": rate}, self.changes, phase)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Variant:
        return cls(data["dimension"], data["value"], dict(data["values"]), dict(data["changes"]),
                   data.get("phase", VERDICT))


def label(value: Any) -> str:
    """One spelling per value (``true``, ``0.25``, ``he_normal``), as the report writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Equal as configuration values: 0 and 0.0 are the same dropout, True and 1 are not the same flag."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _picked(dimension: str, item: Any, own: Any) -> list[Any]:
    """The values one entry of ``ablate.dimensions`` runs, for a best configuration whose value is ``own``."""
    if not isinstance(item, (list, tuple)):
        return [item]
    differing = [value for value in item if not _same(value, own)]
    if len(differing) < len(item):  # the best is one side of the question: the other side runs
        return differing[:1]
    if any(q.family is not None and q.family(label(own)) is None for q in ablation_questions(dimension)):
        return list(item)  # the best is on neither side (random_normal for He vs Glorot): both sides run
    return [item[0]]  # the best is on a side by family (warmup_cosine: "a schedule"), the list's first is not


def plan_variants(best_values: Mapping[str, Any], dimensions: Mapping[str, Sequence[Any]],
                  baselines: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> tuple[list[Variant], list[dict[str, Any]]]:
    """The best configuration first, one variant per (dimension, other value), then the baselines; and what
    was skipped.

    A listed value equal to the best configuration's own is skipped (it is the reference); a list
    inside the list stands for its first value that differs from the best's own, so
    ``[[constant, cosine]]`` runs one variant, whichever side of the question the best is on. When
    the best's own value is on neither side of its dimension's question (``[[glorot_uniform,
    he_normal]]`` for a best configuration initialized with ``random_normal``: neither He nor Glorot),
    every value of the list runs, and the question is answered between them.
    A baseline that the best configuration already is, is skipped too.
    """
    variants = [Variant(None, None, dict(best_values), {})]
    skipped = []
    for dimension, alternatives in dimensions.items():
        own = best_values.get(dimension)
        picked = [value for item in alternatives for value in _picked(dimension, item, own)]
        for value in dict.fromkeys(picked):
            if _same(value, own):
                skipped.append({"dimension": dimension, "value": value, "reason": "the best configuration's own value"})
            else:
                variants.append(Variant(dimension, value, {**best_values, dimension: value}, {dimension: value}))
    for name, changes in (baselines or {}).items():
        if all(_same(value, best_values.get(key)) for key, value in changes.items()):
            skipped.append({"dimension": BASELINE, "value": name, "reason": "the best configuration is this baseline"})
        else:
            variants.append(Variant(BASELINE, name, {**best_values, **changes}, dict(changes)))
    return variants, skipped


# Keys that change only the initial weights or the learning rate the schedule callback assigns each
# batch (every registered schedule's knobs): variants differing in nothing else train the same graph,
# so they share one model (and its traced train step) with the best configuration.
GRAPH_FREE_KEYS = frozenset({"init", "init_stddev", "learning_rate", "lr_schedule", *schedule_knobs()})


def graph_key(values: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in values.items() if k not in GRAPH_FREE_KEYS}, sort_keys=True, default=str)


def config_key(values: Mapping[str, Any]) -> str:
    return json.dumps(dict(values), sort_keys=True, default=str)


def unique_variants(variants: Sequence[Variant]) -> tuple[list[Variant], dict[str, str]]:
    """The variants with a configuration of their own, and ``{duplicate name: name of the one it equals}``.

    A baseline that changes only what one dimension changed already (plain_sgd when the best
    configuration runs at a constant rate) is that variant: trained once, reported under both names.
    """
    first: dict[str, Variant] = {}
    aliases = {}
    for variant in variants:
        key = config_key(variant.values)
        if key in first:
            aliases[variant.name] = first[key].name
        else:
            first[key] = variant
    return list(first.values()), aliases


def with_duplicates(variants: Sequence[Variant], aliases: Mapping[str, str], runs: Sequence[dict[str, Any]],
                    seeds: SeedPlan,
                    on_copy: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every variant's records in plan order (seeds in order), a duplicate's copied from its original
    (and passed to ``on_copy``, which saw only the runs that trained)."""
    by_name: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        by_name.setdefault(run["variant"], {})[run["seed"]] = run
    out = []
    for variant in variants:
        original = aliases.get(variant.name)
        for seed in seeds_of(seeds, variant.name):
            record = by_name.get(original or variant.name, {}).get(seed)
            if record is None:
                continue
            if original:
                record = {**record, "variant": variant.name, "dimension": variant.dimension, "value": variant.value,
                          "phase": variant.phase, "same_as": original, "seconds": 0.0}
            out.append(record)
    if on_copy is not None:
        for record in out:
            if record.get("same_as"):
                on_copy(record)
    return out


def next_run(pending: Sequence[tuple[Variant, int]], mine: set[str], traced: set[str]) -> int:
    """Which of the ``pending`` runs (variant, seed) a free worker takes next: its index.

    Workers take runs one at a time, so none idles while another has a queue (a plain-block run costs
    half a VGG one; a static share left one worker 10-15 s behind per round). A worker keeps to the
    graphs it has traced (``mine``: their models are reused); then it takes a graph no worker has
    traced yet; then it helps with the graph that has the most runs left (tracing it once more).
    """
    graphs = [graph_key(variant.values) for variant, _ in pending]
    for index, graph in enumerate(graphs):
        if graph in mine:
            return index
    left = {graph: graphs.count(graph) for graph in graphs}
    fresh = [graph for graph in left if graph not in traced]
    chosen = max(fresh or left, key=lambda graph: left[graph])  # the first of the largest, in plan order
    return graphs.index(chosen)


def ablation_seeds(seed: int, count: int) -> list[int]:
    """``count`` consecutive seeds from the project's ``seed`` (another ``seed``, another set of runs)."""
    return [(seed + i) % 2**31 for i in range(count)]


__all__ = ["BASELINE", "BEST_NAME", "GRAPH_FREE_KEYS", "METRIC", "RATE", "SCORE_COLUMNS", "VERDICT", "SeedPlan",
           "Variant", "ablation_seeds", "config_key", "graph_key", "label", "plan_variants", "next_run", "seeds_of",
           "unique_variants", "with_duplicates"]
