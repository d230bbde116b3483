"""Which way is better for a tuning objective: the one rule the search, train and report share."""

from __future__ import annotations

import math
from typing import Literal

Direction = Literal["max", "min"]


def direction_of(objective: str) -> Direction:
    """``min`` for losses (``val_loss``), ``max`` for everything else (``val_accuracy``)."""
    return "min" if objective.endswith("loss") else "max"


def shortfall(achieved: float, promised: float, objective: str) -> float:
    """How far ``achieved`` falls behind ``promised`` (0 when it is as good or better)."""
    gap = promised - achieved if direction_of(objective) == "max" else achieved - promised
    return max(0.0, gap)


NOISE_Z = 2.0  # standard errors: ~95% of what drawing other validation images would move an accuracy


def noise_allowance(score: float, images: int, objective: str) -> float:
    """How far two validation accuracies may lie apart by the luck of the ``images`` alone: ``NOISE_Z``
    binomial standard errors at ``score`` (smoothed as (k + 1) / (n + 2), so a perfect score still has one).

    A search's best score is the best of many epochs and trials on the same images, so it sits high by
    that luck; a retrained model, or a seed, falling short of it by less says nothing about the model.
    0 for losses (no closed form here: their configured tolerances stand alone) and without images.
    """
    if direction_of(objective) == "min" or images <= 0:
        return 0.0
    p = (min(max(score, 0.0), 1.0) * images + 1.0) / (images + 2.0)
    return NOISE_Z * math.sqrt(p * (1.0 - p) / images)


def allowed_gap(configured: float, score: float, images: int, objective: str) -> float:
    """A configured tolerance, widened to the validation noise at ``score`` where that is larger."""
    return max(configured, noise_allowance(score, images, objective))
