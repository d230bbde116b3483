"""Which way is better for a tuning objective: the one rule the search, train and report share."""

from __future__ import annotations

from typing import Literal

Direction = Literal["max", "min"]


def direction_of(objective: str) -> Direction:
    """``min`` for losses (``val_loss``), ``max`` for everything else (``val_accuracy``)."""
    return "min" if objective.endswith("loss") else "max"


def shortfall(achieved: float, promised: float, objective: str) -> float:
    """How far ``achieved`` falls behind ``promised`` (0 when it is as good or better)."""
    gap = promised - achieved if direction_of(objective) == "max" else achieved - promised
    return max(0.0, gap)
