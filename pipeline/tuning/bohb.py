"""BOHB: Hyperband whose new configurations come from a density model of the finished trials.

Falkner, Klein and Hutter, "BOHB: Robust and Efficient Hyperparameter Optimization at Scale"
(ICML 2018). Hyperband decides how many epochs each configuration gets; BOHB only changes
*which* configurations start a bracket: once enough trials have finished at some budget, it
splits the trials of the largest such budget into good (the top ``GOOD_FRACTION``) and bad,
fits a density to each (a tree-structured Parzen estimator, one factor per hyperparameter),
draws candidates around the good trials and starts the one with the highest good/bad ratio.
A fraction ``random_fraction`` of configurations stays uniformly random, so the search keeps
exploring and its guarantees stay those of Hyperband. ``initial_points`` (Ray Tune's
``points_to_evaluate``, Optuna's ``enqueue_trial``) run first, each once for ``max_epochs``
outside the brackets (bracket tag -1).

It is a KerasTuner ``Oracle`` (a ``HyperbandOracle`` that overrides how it samples), so
resuming, distributed workers and the MLflow logging work as with Hyperband. Search spaces
here have no conditional scopes (every key is registered in every trial), which the model
relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import keras_tuner as kt
import numpy as np

GOOD_FRACTION = 0.2
# BOHB's d + 1 observations per budget would never be reached by a search of a few dozen
# trials over ~20 hyperparameters; Optuna's TPE starts modelling after 10 trials.
MIN_POINTS = 8
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

    Uses the largest budget with at least ``MIN_POINTS`` finished trials (the most faithful
    ranking the search has); None while no budget has that many.
    """
    if not dims:
        return None
    budgets = sorted({b for _, _, b in observations}, reverse=True)
    chosen = next((b for b in budgets if sum(1 for *_, bb in observations if bb == b) >= MIN_POINTS), None)
    if chosen is None:
        return None
    rows = [(values, score) for values, score, budget in observations if budget == chosen]
    rows.sort(key=lambda r: r[1], reverse=maximize)
    points = np.array([[d.encode(values.get(d.hp.name)) for d in dims] for values, _ in rows])
    n_good = max(2, math.ceil(GOOD_FRACTION * len(rows)))
    if len(rows) - n_good < 2:
        return None
    good, bad = ParzenDensity(points[:n_good], dims), ParzenDensity(points[n_good:], dims)
    candidates = good.sample(rng, CANDIDATES)
    best = candidates[int(np.argmax(good.log_density(candidates) - bad.log_density(candidates)))]
    return {d.hp.name: d.decode(code) for d, code in zip(dims, best, strict=True)}


class BOHBOracle(kt.oracles.HyperbandOracle):
    """``HyperbandOracle`` whose bracket-starting configurations come from ``propose``."""

    def __init__(self, *args: Any, random_fraction: float = 1 / 3,
                 initial_points: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.random_fraction = random_fraction
        self.initial_points = [dict(p) for p in initial_points or []]
        self.initial_points_used = 0
        self.model_proposals = 0  # configurations the density model chose (kept in the state, for the record)

    def observations(self) -> list[tuple[dict[str, Any], float, int]]:
        out = []
        for trial in self.trials.values():
            if trial.status != "COMPLETED" or trial.score is None or not math.isfinite(trial.score):
                continue
            values = trial.hyperparameters.values
            out.append((values, float(trial.score), int(values.get("tuner/epochs", self.max_epochs))))
        return out

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        # Initial points are prior knowledge: they run once for the full max_epochs, before and
        # outside the brackets. In a bracket they would first be judged after one epoch, where a
        # warmup schedule or batch norm still looks worse than it ends up.
        while self.initial_points_used < len(self.initial_points):
            point = self.initial_points[self.initial_points_used]
            self.initial_points_used += 1
            values = super()._random_values()  # keys the point leaves out are drawn at random
            if values is not None:
                values.update(point)
                if not self._duplicate(values):
                    values.update({"tuner/epochs": self.max_epochs, "tuner/initial_epoch": 0,
                                   "tuner/bracket": -1, "tuner/round": 0})
                    return {"status": "RUNNING", "values": values}
        return super().populate_space(trial_id)

    def _random_values(self) -> dict[str, Any] | None:
        # KerasTuner's hook for a bracket's new configuration (HyperbandOracle._random_trial).
        rng = np.random.default_rng([int(self.seed or 0), int(self._seed_state)])
        self._seed_state += 1
        if rng.random() >= self.random_fraction:
            proposal = propose(self.observations(), searched_dimensions(self.hyperparameters.space), rng,
                               maximize=self.objective.direction == "max")
            if proposal is not None:
                values = {hp.name: hp.default for hp in self.hyperparameters.space}
                values.update(proposal)
                if not self._duplicate(values):
                    self.model_proposals += 1
                    return values
        return super()._random_values()

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(random_fraction=self.random_fraction, initial_points=self.initial_points,
                     initial_points_used=self.initial_points_used, model_proposals=self.model_proposals)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.random_fraction = state.get("random_fraction", self.random_fraction)
        self.initial_points = state.get("initial_points", self.initial_points)
        self.initial_points_used = state.get("initial_points_used", 0)
        self.model_proposals = state.get("model_proposals", 0)


class BOHB(kt.Hyperband):
    """KerasTuner's Hyperband tuner (continuations, checkpoints) driven by ``BOHBOracle``."""

    def __init__(self, hypermodel: Any = None, objective: Any = None, max_epochs: int = 100, factor: int = 3,
                 hyperband_iterations: int = 1, seed: int | None = None, max_consecutive_failed_trials: int = 3,
                 random_fraction: float = 1 / 3, initial_points: list[dict[str, Any]] | None = None,
                 **kwargs: Any) -> None:
        oracle = BOHBOracle(objective, max_epochs=max_epochs, factor=factor,
                            hyperband_iterations=hyperband_iterations, seed=seed,
                            max_consecutive_failed_trials=max_consecutive_failed_trials,
                            random_fraction=random_fraction, initial_points=initial_points)
        # kt.Hyperband.__init__ only builds its own oracle; skip it for ours.
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)
