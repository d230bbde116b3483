"""Where BOHB's next configuration comes from: uniform, around the prior, around the incumbent, or the model.

PriorBand (Mallik et al., "PriorBand: Practical Hyperparameter Optimization in the Age of Deep
Learning", NeurIPS 2023) samples each new configuration of a Hyperband bracket from a mixture:

- uniformly, with probability ``1 / (1 + eta**rung)`` where ``rung`` is the bracket's first rung
  (0: the cheapest budget). Cheap brackets explore; the brackets that start at a large budget
  spend it on informed configurations. This keeps Hyperband's robustness to a bad prior.
- from the prior (the user's ``initial_points``): each value the point sets is kept with
  probability ``PRIOR_KEEP`` (a category) or drawn from a Gaussian around it (a number); the
  rest is uniform. The recipe then guides the search instead of being one fixed trial.
- around the incumbent (the best configuration so far): 1 to ``MAX_MUTATIONS`` of its values
  changed. Once the search has evidence, the prior's share is split between prior and
  incumbent by which of the two the best configurations lie closer to, so a weak prior fades.

``propose`` in ``pipeline.tuning.bohb`` (BOHB's density model) takes a share of the informed
draws once it can be fitted. Every function here is pure given its ``rng``: a search is
reproducible per seed and resumes where it left off.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PRIOR_KEEP = 0.75  # a categorical value of the prior is kept with this probability
PRIOR_STDDEV = 0.1  # numeric values of the prior: Gaussian in KerasTuner's unit interval (0.3 decades of a log range)
LOCAL_STDDEV = 0.15  # a mutated numeric value of the incumbent moves by this much (unit interval)
MAX_MUTATIONS = 3
MODEL_SHARE = 0.5  # of the informed (non-uniform) draws, once the density model can be fitted
UNIFORM, PRIOR, INCUMBENT, MODEL = "uniform", "prior", "incumbent", "model"
INITIAL = "initial"  # an initial point itself (tune.initial_points), run before the brackets


def uniform_weight(rung: int, eta: int) -> float:
    """PriorBand's geometric share of uniform draws for a bracket whose first rung is ``rung``."""
    return 1.0 / (1.0 + eta ** max(rung, 0))


def policy_weights(rung: int, eta: int, *, has_prior: bool, has_incumbent: bool, model_ready: bool,
                   prior_share: float, random_fraction: float | None = None) -> dict[str, float]:
    """The probability of each source for the next configuration (sums to 1).

    ``prior_share`` in [0, 1]: how much of the prior/incumbent weight goes to the prior
    (``prior_vs_incumbent``). ``random_fraction`` overrides the geometric uniform share.
    """
    w_uniform = uniform_weight(rung, eta) if random_fraction is None else float(random_fraction)
    informed = 1.0 - w_uniform
    weights = {UNIFORM: w_uniform, PRIOR: 0.0, INCUMBENT: 0.0, MODEL: 0.0}
    anchors = informed
    if model_ready:
        # Without a prior or an incumbent to follow, every informed draw is the model's (BOHB).
        weights[MODEL] = informed * (MODEL_SHARE if (has_prior or has_incumbent) else 1.0)
        anchors = informed - weights[MODEL]
    if has_prior and has_incumbent:
        weights[PRIOR] = anchors * prior_share
        weights[INCUMBENT] = anchors - weights[PRIOR]
    elif has_prior:
        weights[PRIOR] = anchors
    elif has_incumbent:
        weights[INCUMBENT] = anchors
    else:
        weights[UNIFORM] += anchors
    return weights


def choose(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    probs = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def sample_prior(point: dict[str, Any], dims: list[Any], rng: np.random.Generator) -> dict[str, Any]:
    """One configuration from the prior centred on ``point`` (keys it leaves out: uniform)."""
    out = {}
    for dim in dims:
        name = dim.hp.name
        if name not in point:
            out[name] = _uniform_value(dim, rng)
        elif dim.categories is not None:
            keep = len(dim.categories) == 1 or rng.random() < PRIOR_KEEP
            out[name] = point[name] if keep else _other_category(dim, point[name], rng)
        else:
            out[name] = dim.decode(_reflect(rng.normal(dim.encode(point[name]), PRIOR_STDDEV)))
    return out


def mutate(values: dict[str, Any], dims: list[Any], rng: np.random.Generator) -> dict[str, Any]:
    """The incumbent with 1..``MAX_MUTATIONS`` searched values changed (a category always to another one)."""
    out = {d.hp.name: values.get(d.hp.name) for d in dims}
    mutable = [d for d in dims if d.categories is None or len(d.categories) > 1]
    if not mutable:
        return out
    count = int(rng.integers(1, min(MAX_MUTATIONS, len(mutable)) + 1))
    for index in rng.choice(len(mutable), size=count, replace=False):
        dim = mutable[int(index)]
        name = dim.hp.name
        if dim.categories is not None:
            out[name] = _other_category(dim, values.get(name), rng)
        else:
            out[name] = dim.decode(_reflect(rng.normal(dim.encode(values.get(name)), LOCAL_STDDEV)))
    return out


def prior_vs_incumbent(top: list[dict[str, Any]], priors: list[dict[str, Any]], incumbent: dict[str, Any],
                       dims: list[Any]) -> float:
    """The prior's share of the prior/incumbent weight: how many of the ``top`` configurations lie
    closer to a prior point than to the incumbent (ties count half), smoothed by one each way.

    PriorBand compares the likelihood of the top configurations under the two distributions;
    with a dozen trials a nearest-anchor count is the same comparison without extreme ratios.
    """
    if not priors:
        return 0.0
    votes = 0.0
    for config in top:
        to_prior = min(distance(config, p, dims) for p in priors)
        to_incumbent = distance(config, incumbent, dims)
        votes += 1.0 if to_prior < to_incumbent else 0.5 if to_prior == to_incumbent else 0.0
    return (votes + 1.0) / (len(top) + 2.0)


def distance(a: dict[str, Any], b: dict[str, Any], dims: list[Any]) -> float:
    """Mismatched categories count 1, numbers their distance in the unit interval; keys ``b`` leaves out: 0."""
    total = 0.0
    for dim in dims:
        name = dim.hp.name
        if name not in b or name not in a:
            continue
        if dim.categories is not None:
            total += float(a[name] != b[name])
        else:
            total += abs(dim.encode(a[name]) - dim.encode(b[name]))
    return total


def _uniform_value(dim: Any, rng: np.random.Generator) -> Any:
    if dim.categories is not None:
        return dim.categories[int(rng.integers(len(dim.categories)))]
    return dim.decode(float(rng.random()))


def _other_category(dim: Any, current: Any, rng: np.random.Generator) -> Any:
    others = [c for c in dim.categories if c != current] or dim.categories
    return others[int(rng.integers(len(others)))]


def _reflect(code: float) -> float:
    """Fold a Gaussian draw back into [0, 1): mass beyond an end stays near that end, not at it."""
    code = abs(float(code)) % 2.0
    code = 2.0 - code if code > 1.0 else code
    return min(max(code, 0.0), 1.0 - 1e-9) if math.isfinite(code) else 0.5
