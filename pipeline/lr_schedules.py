"""The built-in learning-rate schedules: each a pure function of the (fractional, absolute) epoch, with its knobs.

Registered in ``pipeline.registry.SCHEDULES``, which ``params.yaml``'s ``search_space.lr_schedule``
names; each knob is a ``search_space`` key of its own (validated with the bounds declared here),
and ``pipeline.model.schedules.ScheduleCallback`` applies the rate per batch. Plain Python: the
schema reads these declarations before TensorFlow loads.

Schedules (``lr`` = ``learning_rate``, ``T`` = total epochs, ``floor = lr * cosine_floor``):
  constant         lr
  step             lr * step_decay_factor ** floor(epoch / step_decay_epochs)
  exponential      lr * exp_decay_rate ** epoch
  cosine           floor + (lr - floor) * (1 + cos(pi * min(epoch, T) / T)) / 2
  cosine_restarts  SGDR: the cosine over a period of restart_epochs, each next period
                   restart_mult times longer, back to lr at every restart
  warmup_cosine    linear from floor to lr over warmup_epochs, then the cosine from lr to
                   floor over the remaining T - warmup_epochs epochs
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pipeline.registry import SCHEDULES, Knob, Schedule

STEP_DECAY_FACTOR = Knob("step_decay_factor", "float", 0.5, gt=0.0, le=1.0)
STEP_DECAY_EPOCHS = Knob("step_decay_epochs", "int", 3, ge=1, le=1000)
EXP_DECAY_RATE = Knob("exp_decay_rate", "float", 0.8, gt=0.0, le=1.0)
COSINE_FLOOR = Knob("cosine_floor", "float", 0.01, ge=0.0, le=1.0)
RESTART_EPOCHS = Knob("restart_epochs", "int", 3, ge=1, le=1000)
RESTART_MULT = Knob("restart_mult", "float", 2.0, ge=1.0, le=10.0)
WARMUP_EPOCHS = Knob("warmup_epochs", "int", 1, ge=0, le=1000)


def cosine(lr: float, floor: float, progress: float) -> float:
    """From ``lr`` (progress 0) down to ``floor`` (progress 1) along half a cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _floor(values: Mapping[str, Any]) -> float:
    return float(values["learning_rate"]) * float(values.get("cosine_floor", 0.0))


def _restart_position(epoch: float, period: float, mult: float) -> tuple[float, float]:
    """(epochs since the last restart, length of the current period) for SGDR."""
    if mult == 1.0:
        return epoch % period, period
    start = 0.0
    while epoch >= start + period:  # periods grow geometrically: a few iterations
        start += period
        period *= mult
    return epoch - start, period


def _constant(values: Mapping[str, Any], epoch: float, total: float) -> float:
    return float(values["learning_rate"])


def _step(values: Mapping[str, Any], epoch: float, total: float) -> float:
    lr = float(values["learning_rate"])
    return lr * float(values["step_decay_factor"]) ** math.floor(epoch / int(values["step_decay_epochs"]))


def _exponential(values: Mapping[str, Any], epoch: float, total: float) -> float:
    return float(values["learning_rate"]) * float(values["exp_decay_rate"]) ** epoch


def _cosine(values: Mapping[str, Any], epoch: float, total: float) -> float:
    return cosine(float(values["learning_rate"]), _floor(values), epoch / total)


def _cosine_restarts(values: Mapping[str, Any], epoch: float, total: float) -> float:
    since, period = _restart_position(epoch, float(values["restart_epochs"]), float(values["restart_mult"]))
    return cosine(float(values["learning_rate"]), _floor(values), since / period)


def _warmup_cosine(values: Mapping[str, Any], epoch: float, total: float) -> float:
    lr, floor, warmup = float(values["learning_rate"]), _floor(values), float(values["warmup_epochs"])
    if epoch < warmup:
        return floor + (lr - floor) * epoch / warmup
    remaining = total - warmup
    # a warmup as long as the whole run leaves no cosine phase: the floor right after it
    return cosine(lr, floor, (epoch - warmup) / remaining if remaining > 0 else 1.0)


# Registration order is the order of the knobs in search_space (and of the trial parameters in MLflow).
for _schedule in (
    Schedule("constant", _constant),
    Schedule("step", _step, (STEP_DECAY_FACTOR, STEP_DECAY_EPOCHS)),
    Schedule("exponential", _exponential, (EXP_DECAY_RATE,)),
    Schedule("cosine", _cosine, (COSINE_FLOOR,), needs_total=True),
    Schedule("cosine_restarts", _cosine_restarts, (COSINE_FLOOR, RESTART_EPOCHS, RESTART_MULT)),
    Schedule("warmup_cosine", _warmup_cosine, (COSINE_FLOOR, WARMUP_EPOCHS), needs_total=True),
):
    SCHEDULES.register(_schedule)
del _schedule

__all__ = ["cosine"]
