"""Learning-rate schedules configured in epochs, applied per batch by a callback.

The schedule is a pure function of the (fractional) absolute epoch, not of the
optimizer's step counter: KerasTuner's Hyperband continues a trial by loading weights
into a freshly compiled model whose step counter is 0, so a step-based Keras
``LearningRateSchedule`` would restart. ``ScheduleCallback`` sets the optimizer's
learning rate before every batch from ``learning_rate_at(values, epoch + batch / steps)``,
which gives a continued trial exactly the rates of an uninterrupted one.

The schedules themselves (their formulas and knobs) are entries of ``pipeline.registry.SCHEDULES``;
the built-in ones are in ``pipeline.lr_schedules``.
"""

from __future__ import annotations

from typing import Any

import keras

from pipeline.registry import SCHEDULES


def _total_epochs(values: dict[str, Any], total_epochs: float | None) -> float:
    for candidate in (total_epochs, values.get("total_epochs"), values.get("tuner/epochs")):
        if candidate is not None:
            return max(float(candidate), 1e-12)
    raise ValueError(
        f"lr_schedule {values.get('lr_schedule')!r} anneals over the run's total epochs: "
        "pass total_epochs (or a 'total_epochs' value)"
    )


def learning_rate_at(values: dict[str, Any], epoch: float, total_epochs: float | None = None) -> float:
    """The learning rate at (fractional, absolute) ``epoch`` for hyperparameter ``values``.

    ``total_epochs`` is the horizon of the schedules that anneal over the run (``needs_total``);
    without it the value ``values["total_epochs"]`` and then ``values["tuner/epochs"]`` are used.
    """
    schedule = SCHEDULES.get(values.get("lr_schedule", "constant"))
    total = _total_epochs(values, total_epochs) if schedule.needs_total else float("nan")
    return float(schedule.rate(values, max(float(epoch), 0.0), total))


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
        if SCHEDULES.get(self.values.get("lr_schedule", "constant")).needs_total:
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
