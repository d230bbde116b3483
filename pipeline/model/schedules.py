"""Learning-rate schedules configured in epochs, applied per batch by a callback.

The schedule is a pure function of the (fractional) absolute epoch, not of the
optimizer's step counter: KerasTuner's Hyperband continues a trial by loading weights
into a freshly compiled model whose step counter is 0, so a step-based Keras
``LearningRateSchedule`` would restart. ``ScheduleCallback`` sets the optimizer's
learning rate before every batch from ``learning_rate_at(values, epoch + batch / steps)``,
which gives a continued trial exactly the rates of an uninterrupted one.

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
from typing import Any

import keras

SCHEDULES_NEEDING_TOTAL = ("cosine", "warmup_cosine")


def _total_epochs(values: dict[str, Any], total_epochs: float | None) -> float:
    for candidate in (total_epochs, values.get("total_epochs"), values.get("tuner/epochs")):
        if candidate is not None:
            return max(float(candidate), 1e-12)
    raise ValueError(
        f"lr_schedule {values.get('lr_schedule')!r} anneals over the run's total epochs: "
        "pass total_epochs (or a 'total_epochs' value)"
    )


def _cosine(lr: float, floor: float, progress: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _restart_position(epoch: float, period: float, mult: float) -> tuple[float, float]:
    """(epochs since the last restart, length of the current period) for SGDR."""
    if mult == 1.0:
        return epoch % period, period
    start = 0.0
    while epoch >= start + period:  # periods grow geometrically: a few iterations
        start += period
        period *= mult
    return epoch - start, period


def learning_rate_at(values: dict[str, Any], epoch: float, total_epochs: float | None = None) -> float:
    """The learning rate at (fractional, absolute) ``epoch`` for hyperparameter ``values``.

    ``total_epochs`` is the horizon of ``cosine``/``warmup_cosine``; without it the value
    ``values["total_epochs"]`` and then ``values["tuner/epochs"]`` are used.
    """
    lr = float(values["learning_rate"])
    schedule = values.get("lr_schedule", "constant")
    epoch = max(float(epoch), 0.0)
    floor = lr * float(values.get("cosine_floor", 0.0))
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * float(values["step_decay_factor"]) ** math.floor(epoch / int(values["step_decay_epochs"]))
    if schedule == "exponential":
        return lr * float(values["exp_decay_rate"]) ** epoch
    if schedule == "cosine":
        return _cosine(lr, floor, epoch / _total_epochs(values, total_epochs))
    if schedule == "cosine_restarts":
        since, period = _restart_position(epoch, float(values["restart_epochs"]), float(values["restart_mult"]))
        return _cosine(lr, floor, since / period)
    if schedule == "warmup_cosine":
        warmup = float(values["warmup_epochs"])
        if epoch < warmup:
            return floor + (lr - floor) * epoch / warmup
        remaining = _total_epochs(values, total_epochs) - warmup
        # a warmup as long as the whole run leaves no cosine phase: the floor right after it
        return _cosine(lr, floor, (epoch - warmup) / remaining if remaining > 0 else 1.0)
    raise ValueError(f"unknown lr_schedule {schedule!r}")


class ScheduleCallback(keras.callbacks.Callback):
    """Set the optimizer's learning rate before each batch; put it in each epoch's logs.

    ``logs["learning_rate"]`` is the rate at the epoch's first batch. Steps per epoch come
    from Keras' own count (``self.params["steps"]``) unless given; if neither is known the
    rate changes once per epoch.
    """

    def __init__(self, values: dict[str, Any], total_epochs: float | None = None,
                 steps_per_epoch: int | None = None) -> None:
        super().__init__()
        self.values = dict(values)
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self._epoch = 0
        self._epoch_lr: float | None = None
        self._last_set: float | None = None
        if self.values.get("lr_schedule") in SCHEDULES_NEEDING_TOTAL:
            _total_epochs(self.values, total_epochs)  # fail at once, not in the first batch

    def rate(self, epoch: float) -> float:
        return learning_rate_at(self.values, epoch, self.total_epochs)

    def _steps(self) -> int | None:
        steps = self.steps_per_epoch or (self.params or {}).get("steps")
        return int(steps) if steps else None

    def _set(self, lr: float) -> None:
        # Assigning the optimizer's variable costs ~0.1 ms; skip it when the rate is unchanged
        # (constant, and step between its boundaries), which matters for tiny models.
        if lr != self._last_set:
            self.model.optimizer.learning_rate = lr
            self._last_set = lr

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._last_set = None  # a compiled model starts from its own rate

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        self._epoch_lr = self.rate(epoch)
        self._set(self._epoch_lr)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        steps = self._steps()
        if steps:
            self._set(self.rate(self._epoch + min(batch, steps) / steps))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is not None and self._epoch_lr is not None:
            logs["learning_rate"] = float(self._epoch_lr)
