"""BOHB with a prior: Hyperband whose new configurations come from PriorBand's mixture and a density model.

Falkner, Klein and Hutter, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale"
(ICML 2018). Hyperband decides how many epochs each configuration gets; BOHB changes *which*
configurations start a bracket: a tree-structured Parzen estimator splits the finished trials
into good (the top ``GOOD_FRACTION``) and bad, and the candidate with the highest good/bad
density ratio starts. Here the model ranks every configuration within the largest budget it
reached (``pooled_ranks``), so it starts after ``MIN_POINTS`` configurations instead of
waiting for d + 1 trials at one budget, which a 24-trial search never has.

``initial_points`` (Ray Tune's ``points_to_evaluate``, Optuna's ``enqueue_trial``) run first,
each once outside the brackets (bracket tag -1) for ``initial_epochs`` (``initial_point_epochs``:
``max_epochs``, or one rung below it under data fidelity), and then act as a prior:
each new configuration is drawn uniformly, around a prior point, around the incumbent or from
the model, with PriorBand's weights (``pipeline.tuning.prior``). The brackets run in
``bracket_order``: a full-budget result comes early, and the full-budget brackets come last.

It is a KerasTuner ``Oracle`` (a ``HyperbandOracle`` that overrides how it samples), so
resuming, distributed workers and the MLflow logging work as with Hyperband; everything it
draws comes from a generator seeded by (seed, KerasTuner's seed state), both in the saved
state. Search spaces here have no conditional scopes (every key is registered in every
trial), which the model relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt
import numpy as np

from pipeline.tuning.prior import (
    INCUMBENT,
    INITIAL,
    MODEL,
    PRIOR,
    UNIFORM,
    choose,
    mutate,
    policy_weights,
    prior_vs_incumbent,
    sample_prior,
)
from pipeline.tuning.records import INITIAL_BRACKET

# in a trial's values: how its configuration was drawn, uniform / prior / incumbent / model / initial
SOURCE_KEY = "tuner/source"

GOOD_FRACTION = 0.2
# BOHB's d + 1 observations per budget would never be reached by a search of a few dozen
# trials over ~12 hyperparameters; Optuna's TPE starts modelling after 10 trials.
MIN_POINTS = 6  # distinct configurations, over all budgets (``pooled_ranks``)
ATTEMPTS = 20  # draws before falling back to KerasTuner's uniform sampler (all were duplicates)
CANDIDATES = 64
BANDWIDTH_FACTOR = 3.0  # BOHB samples candidates from the good density widened by this factor
MIN_BANDWIDTH = 0.03  # in the unit interval KerasTuner maps every numeric range to


@dataclass
class _Dimension:
    hp: Any
    categories: list[Any] | None  # None: numeric, mapped to [0, 1) by KerasTuner's value_to_prob

    def encode(self, value: Any) -> float:
        if self.categories is not None:
            return float(self.categories.index(value)) if value in self.categories else 0.0
        return float(self.hp.value_to_prob(value))

    def decode(self, code: float) -> Any:
        if self.categories is not None:
            return self.categories[int(code)]
        return self.hp.prob_to_value(float(np.clip(code, 0.0, 1.0 - 1e-9)))


def searched_dimensions(space: list[Any]) -> list[_Dimension]:
    """The searched hyperparameters of a KerasTuner space: choices as categories, ranges as numbers."""
    dims = []
    for hp in space:
        if isinstance(hp, kt.engine.hyperparameters.Fixed):
            continue
        if isinstance(hp, kt.engine.hyperparameters.Boolean):
            dims.append(_Dimension(hp, [False, True]))
        elif isinstance(hp, kt.engine.hyperparameters.Choice):
            dims.append(_Dimension(hp, list(hp.values)))
        else:
            dims.append(_Dimension(hp, None))
    return dims


class ParzenDensity:
    """A product of one-dimensional densities: smoothed frequencies for categories, Gaussian kernels else."""

    def __init__(self, points: np.ndarray, dims: list[_Dimension]) -> None:
        self.points, self.dims = points, dims
        n = len(points)
        # Scott's rule per numeric dimension, floored so identical points still form a density.
        self.bandwidths = np.array([
            max(MIN_BANDWIDTH, float(np.std(points[:, j])) * n ** (-1 / (4 + len(dims)))) if d.categories is None
            else 0.0 for j, d in enumerate(dims)])
        self.frequencies = [
            None if d.categories is None else
            (np.bincount(points[:, j].astype(int), minlength=len(d.categories)) + 1.0)
            / (n + len(d.categories))
            for j, d in enumerate(dims)]

    def log_density(self, candidates: np.ndarray) -> np.ndarray:
        total = np.zeros(len(candidates))
        for j, dim in enumerate(self.dims):
            if dim.categories is not None:
                total += np.log(self.frequencies[j][candidates[:, j].astype(int)])
                continue
            diff = (candidates[:, j, None] - self.points[None, :, j]) / self.bandwidths[j]
            kernel = np.exp(-0.5 * diff**2).mean(axis=1) / (self.bandwidths[j] * math.sqrt(2 * math.pi))
            total += np.log(kernel + 1e-300)
        return total

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Candidates around the points: numeric dimensions widened by ``BANDWIDTH_FACTOR``."""
        centers = self.points[rng.integers(0, len(self.points), size=count)]
        out = np.empty_like(centers)
        for j, dim in enumerate(self.dims):
            if dim.categories is not None:
                out[:, j] = rng.choice(len(dim.categories), size=count, p=self.frequencies[j])
            else:
                noisy = rng.normal(centers[:, j], self.bandwidths[j] * BANDWIDTH_FACTOR)
                out[:, j] = np.clip(noisy, 0.0, 1.0 - 1e-9)
        return out


def propose(observations: list[tuple[dict[str, Any], float, int]], dims: list[_Dimension],
            rng: np.random.Generator, maximize: bool) -> dict[str, Any] | None:
    """The next configuration ``{name: value}`` from ``(values, score, budget)`` observations, or None.

    BOHB fits its densities on one budget and waits until that budget has d + 1 trials, which a
    search of two dozen trials would reach late or never. Here every budget counts: each
    configuration is ranked among the trials of its largest budget (a quantile, 0 = best), so
    a configuration that won its 1-epoch rung is as "good" as the winner at 9 epochs; the
    model starts once ``MIN_POINTS`` configurations are known. None before that.
    """
    if not dims:
        return None
    rows = pooled_ranks(observations, maximize)
    if len(rows) < MIN_POINTS:
        return None
    rows.sort(key=lambda r: r[1])
    points = np.array([[d.encode(values.get(d.hp.name)) for d in dims] for values, _ in rows])
    n_good = max(2, math.ceil(GOOD_FRACTION * len(rows)))
    if len(rows) - n_good < 2:
        return None
    good, bad = ParzenDensity(points[:n_good], dims), ParzenDensity(points[n_good:], dims)
    candidates = good.sample(rng, CANDIDATES)
    best = candidates[int(np.argmax(good.log_density(candidates) - bad.log_density(candidates)))]
    return {d.hp.name: d.decode(code) for d, code in zip(dims, best, strict=True)}


def pooled_ranks(observations: list[tuple[dict[str, Any], float, int]],
                 maximize: bool) -> list[tuple[dict[str, Any], float]]:
    """One row per distinct configuration: its values and its rank quantile (0 best, 1 worst) among
    the trials of the largest budget it reached (a continued trial shares its parent's values)."""
    by_budget: dict[int, list[tuple[str, float]]] = {}
    largest: dict[str, tuple[int, dict[str, Any]]] = {}
    for values, score, budget in observations:
        key = _config_key(values)
        by_budget.setdefault(budget, []).append((key, score))
        if key not in largest or budget > largest[key][0]:
            largest[key] = (budget, values)
    rows = []
    for key, (budget, values) in largest.items():
        scores = sorted((s for _, s in by_budget[budget]), reverse=maximize)
        mine = max(s for k, s in by_budget[budget] if k == key) if maximize else \
            min(s for k, s in by_budget[budget] if k == key)
        quantile = scores.index(mine) / (len(scores) - 1) if len(scores) > 1 else 0.0
        rows.append((values, quantile))
    return rows


def _config_key(values: dict[str, Any]) -> str:
    return repr(sorted((k, repr(v)) for k, v in values.items() if not k.startswith("tuner/")))


def bracket_order(num_brackets: int) -> list[int]:
    """The order of Hyperband's brackets in one iteration (KerasTuner's number: 0 = all trials at max_epochs).

    KerasTuner starts with the most aggressive bracket, whose first result at max_epochs comes
    after a third of the iteration's epochs and from a 1-epoch screen. Starting with the next
    one (screened at max_epochs / eta**(n-2), e.g. 3 of 9 epochs) gives a full-budget result
    early and a faithful first ranking; then the most aggressive bracket explores cheaply and
    the full-budget brackets come last, drawn from what the search has learned. Bracket 0
    stays last: KerasTuner's stop rule is "bracket 0 of the last iteration".
    """
    if num_brackets < 3:
        return list(range(num_brackets - 1, -1, -1))
    return [num_brackets - 2, num_brackets - 1, *range(num_brackets - 3, -1, -1)]


def initial_point_epochs(max_epochs: int, factor: int, fidelity: str) -> int:
    """The epochs each initial point runs for: ``max_epochs``, or under data fidelity one rung below.

    With data fidelity (big training sets) a full-budget trial costs ``max_epochs`` epochs on all
    the data: on 60,000 images and 2 cores, 9 epochs took more than a 30-minute ``tune.time_budget``,
    so the recipe alone spent the search's budget and nothing was searched (issue 25). One rung
    below (``max_epochs / factor`` epochs on that fraction of the data) costs ``1 / factor**2`` of
    it, still screens the recipe past a warmup, and ranks it against the rung the brackets reach.
    """
    if fidelity != "data":
        return int(max_epochs)
    return max(1, math.ceil(int(max_epochs) / int(factor)))


class BOHBOracle(kt.oracles.HyperbandOracle):
    """``HyperbandOracle`` whose new configurations come from PriorBand's mixture and BOHB's model.

    ``random_fraction`` None: PriorBand's geometric share of uniform draws per bracket; a number
    fixes it (1.0: Hyperband's random sampling, for comparisons).
    """

    def __init__(self, *args: Any, random_fraction: float | None = None,
                 initial_points: list[dict[str, Any]] | None = None, initial_epochs: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.random_fraction = random_fraction
        self.initial_points = [dict(p) for p in initial_points or []]
        self.initial_epochs = int(initial_epochs or self.max_epochs)
        self.initial_points_used = 0
        self.model_proposals = 0  # configurations the density model chose (kept in the state, for the record)
        self.sources: dict[str, int] = {}  # how many new configurations each policy gave (the state keeps it)
        self._bracket_for_sample: int | None = None
        self._last_source: str | None = None  # the policy of the last _random_values draw
        # Restart the first iteration with our bracket order (KerasTuner's __init__ opened its own first).
        self._current_bracket = bracket_order(self._get_num_brackets())[0]
        self._brackets = []
        self._start_new_bracket()

    def observations(self) -> list[tuple[dict[str, Any], float, int]]:
        out = []
        # In trial-id order: KerasTuner reloads trials in the file system's order, and the model's
        # draws depend on the order of its points; a resumed search must draw what it would have.
        for _, trial in sorted(self.trials.items()):
            if trial.status != "COMPLETED" or trial.score is None or not math.isfinite(trial.score):
                continue
            values = trial.hyperparameters.values
            out.append((values, float(trial.score), int(values.get("tuner/epochs", self.max_epochs))))
        return out

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        # Initial points are prior knowledge: they run once for ``initial_epochs`` (the full
        # max_epochs but under data fidelity), before and outside the brackets. In a bracket they
        # would first be judged after one epoch, where a warmup schedule or batch norm still looks
        # worse than it ends up. The brackets then sample around them (``pipeline.tuning.prior``).
        while self.initial_points_used < len(self.initial_points):
            point = self.initial_points[self.initial_points_used]
            self.initial_points_used += 1
            values = super()._random_values()  # keys the point leaves out are drawn at random
            if values is not None:
                values.update(point)
                if not self._duplicate(values):
                    values.update({"tuner/epochs": self.initial_epochs, "tuner/initial_epoch": 0,
                                   "tuner/bracket": INITIAL_BRACKET, "tuner/round": 0, SOURCE_KEY: INITIAL})
                    return {"status": "RUNNING", "values": values}
        return super().populate_space(trial_id)

    def _increment_bracket_num(self) -> None:
        order = bracket_order(self._get_num_brackets())
        index = order.index(self._current_bracket) if self._current_bracket in order else len(order) - 1
        if index + 1 < len(order):
            self._current_bracket = order[index + 1]
        else:
            self._current_bracket = order[0]
            self._current_iteration += 1

    def _random_trial(self, trial_id: str, bracket: dict[str, Any]) -> dict[str, Any]:
        # KerasTuner's hook for a bracket's new configuration; remember which bracket asks, and tag
        # the configuration with the policy that drew it (Hyperband's continuations copy the tag).
        self._bracket_for_sample = int(bracket["bracket_num"])
        self._last_source = None
        try:
            response = super()._random_trial(trial_id, bracket)
        finally:
            self._bracket_for_sample = None
        if response.get("values") is not None and self._last_source is not None:
            response["values"][SOURCE_KEY] = self._last_source
        return response

    def _compute_values_hash(self, values: dict[str, Any]) -> str:
        # the tag says where a configuration came from, not what it is: a duplicate is one whatever its source
        return super()._compute_values_hash({k: v for k, v in values.items() if k != SOURCE_KEY})

    def _random_values(self) -> dict[str, Any] | None:
        rng = np.random.default_rng([int(self.seed or 0), int(self._seed_state)])
        self._seed_state += 1
        dims = searched_dimensions(self.hyperparameters.space)
        bracket = self._bracket_for_sample if self._bracket_for_sample is not None else self._current_bracket
        rung = self._get_num_brackets() - 1 - bracket  # 0: the bracket that starts at the cheapest budget
        for _ in range(ATTEMPTS):
            source, proposal = self._draw(rng, dims, rung)
            if source == UNIFORM:
                break
            if proposal is None:  # the model cannot be fitted after all: draw again
                continue
            values = {hp.name: hp.default for hp in self.hyperparameters.space}
            values.update(proposal)
            if not self._duplicate(values):
                self.sources[source] = self.sources.get(source, 0) + 1
                if source == MODEL:
                    self.model_proposals += 1
                self._last_source = source
                return values
        values = super()._random_values()
        if values is not None:
            self.sources[UNIFORM] = self.sources.get(UNIFORM, 0) + 1
            self._last_source = UNIFORM
        return values

    def _draw(self, rng: np.random.Generator, dims: list[_Dimension],
              rung: int) -> tuple[str, dict[str, Any] | None]:
        """One policy draw (``pipeline.tuning.prior.policy_weights``) and its configuration (None: uniform)."""
        observations = self.observations()
        maximize = self.objective.direction == "max"
        evidence = _has_evidence(observations, self.factor)
        incumbent = _incumbent(observations, maximize) if evidence else None
        share = 0.0
        if self.initial_points and incumbent is not None:
            share = prior_vs_incumbent(_top_configs(observations, maximize, self.factor), self.initial_points,
                                       incumbent, dims)
        weights = policy_weights(rung, self.factor, has_prior=bool(self.initial_points),
                                 has_incumbent=incumbent is not None,
                                 model_ready=len(pooled_ranks(observations, maximize)) >= MIN_POINTS,
                                 prior_share=share, random_fraction=self.random_fraction)
        source = choose(weights, rng)
        if source == PRIOR:
            point = self.initial_points[int(rng.integers(len(self.initial_points)))]
            return source, sample_prior(point, dims, rng)
        if source == INCUMBENT:
            return source, mutate(incumbent, dims, rng)
        if source == MODEL:
            return source, propose(observations, dims, rng, maximize)
        return UNIFORM, None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(random_fraction=self.random_fraction, initial_points=self.initial_points,
                     initial_points_used=self.initial_points_used, model_proposals=self.model_proposals,
                     sources=self.sources, initial_epochs=self.initial_epochs)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.random_fraction = state.get("random_fraction", self.random_fraction)
        self.initial_points = state.get("initial_points", self.initial_points)
        self.initial_points_used = state.get("initial_points_used", 0)
        self.initial_epochs = int(state.get("initial_epochs", self.max_epochs))  # older states: max_epochs
        self.model_proposals = state.get("model_proposals", 0)
        self.sources = dict(state.get("sources", {}))


def _has_evidence(observations: list[tuple[dict[str, Any], float, int]], eta: int) -> bool:
    """PriorBand follows the incumbent once some budget has ``eta`` finished trials to rank."""
    counts: dict[int, int] = {}
    for _, _, budget in observations:
        counts[budget] = counts.get(budget, 0) + 1
    return any(c >= eta for c in counts.values())


def _incumbent(observations: list[tuple[dict[str, Any], float, int]], maximize: bool) -> dict[str, Any] | None:
    """The best trial's values (ties: the larger budget, whose score rests on more epochs)."""
    if not observations:
        return None
    sign = 1.0 if maximize else -1.0
    values, _, _ = max(observations, key=lambda o: (sign * o[1], o[2]))
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


def _top_configs(observations: list[tuple[dict[str, Any], float, int]], maximize: bool,
                 eta: int) -> list[dict[str, Any]]:
    """PriorBand's top 1/eta of the trials at the largest budget that has at least ``eta`` of them."""
    counts: dict[int, int] = {}
    for _, _, budget in observations:
        counts[budget] = counts.get(budget, 0) + 1
    ranked = [b for b, c in counts.items() if c >= eta]
    if not ranked:
        return []
    rows = sorted((o for o in observations if o[2] == max(ranked)), key=lambda o: o[1], reverse=maximize)
    return [values for values, _, _ in rows[:max(1, len(rows) // eta)]]


class BOHB(kt.Hyperband):
    """KerasTuner's Hyperband tuner (continuations, checkpoints) driven by ``BOHBOracle``."""

    def __init__(self, hypermodel: Any = None, objective: Any = None, max_epochs: int = 100, factor: int = 3,
                 hyperband_iterations: int = 1, seed: int | None = None, max_consecutive_failed_trials: int = 3,
                 random_fraction: float | None = None, initial_points: list[dict[str, Any]] | None = None,
                 initial_epochs: int | None = None, **kwargs: Any) -> None:
        oracle = BOHBOracle(objective, max_epochs=max_epochs, factor=factor,
                            hyperband_iterations=hyperband_iterations, seed=seed,
                            max_consecutive_failed_trials=max_consecutive_failed_trials,
                            random_fraction=random_fraction, initial_points=initial_points,
                            initial_epochs=initial_epochs)
        # kt.Hyperband.__init__ only builds its own oracle; skip it for ours.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
