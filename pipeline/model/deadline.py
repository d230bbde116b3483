"""A Keras callback that ends training cleanly at an epoch end, so that the run ends within its ``TimeBudget``.

No epoch is started that would end past the budget: at each epoch end, when what is left of the
budget is less than the epoch just finished took, training stops there (and the budget is closed, so
nothing else starts); an epoch that runs out the budget anyway (it ran slower than the one before)
is finished. Either way ``model.stop_training`` ends ``fit`` the way early stopping does: a tuner
scores the trial on the epochs it reached, the final training keeps the model as it is. On 60,000
images an epoch took 4-5 minutes on 2 cores: finishing the epoch that ran out a 30-minute search
budget overran it by 4 minutes.

``FitHorizonToBudget`` does better for a final model: after its first epoch it knows what an epoch
costs, and when the planned epochs cannot fit in what is left of the budget it shortens the run
*and* the learning-rate schedule's horizon to the epochs that fit, so the model ends annealed
rather than cut off at a high rate in the middle of a 20-epoch schedule.
"""

from __future__ import annotations

import math
import time
from typing import Any

import keras

from pipeline.time_budget import TimeBudget


class StopAtDeadline(keras.callbacks.Callback):
    """``name`` says what it stops in the budget's note, e.g. ``trial 0004`` or ``model 2``."""

    clock = staticmethod(time.monotonic)  # a test gives epochs a known cost

    def __init__(self, budget: TimeBudget, name: str = "training") -> None:
        super().__init__()
        self.budget, self.name = budget, name
        self.stopped_at: int | None = None  # epochs done when it stopped training
        self._epoch_began: float | None = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_began = self.clock()

    def _next_epoch_would_overrun(self) -> bool:
        left = self.budget.left()
        took = None if self._epoch_began is None else self.clock() - self._epoch_began
        return left is not None and took is not None and left < took

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        spent = self.budget.is_spent()
        ahead = not spent and self._next_epoch_would_overrun()
        if not (spent or ahead):
            return
        total = (self.params or {}).get("epochs")
        if total is not None and epoch + 1 >= int(total):
            return  # the last epoch anyway: nothing was cut
        self.model.stop_training = True
        self.stopped_at = epoch + 1
        of = f" of {total}" if total is not None else ""
        what = f"{self.name} stopped at epoch {epoch + 1}{of}"
        if ahead:
            self.budget.close(f"{what}, another epoch would end past the budget")
        else:
            self.budget.stop(what)


class FitHorizonToBudget(StopAtDeadline):
    """``StopAtDeadline`` that, at the end of the first epoch, fits the run to the budget left.

    ``attach_schedule`` (called by ``pipeline.model.training.fit_model``) hands it the run's
    ``ScheduleCallback``; where the planned epochs will not fit, both the run and the schedule's
    horizon become the epochs that do (at least the one done). ``fitted`` says to how many.
    """

    # An epoch's cost is read from the first, which also traced the step: a little pessimistic, and
    # this margin keeps the last epoch inside the budget when later epochs run slower.
    MARGIN = 0.95

    def __init__(self, budget: TimeBudget, name: str = "training") -> None:
        super().__init__(budget, name)
        self.schedule: Any = None
        self.fitted: int | None = None  # the epochs the run was shortened to; None: it was not

    def attach_schedule(self, schedule: Any) -> None:
        self.schedule = schedule

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        planned = (self.params or {}).get("epochs")
        if epoch == 0 and planned is not None and self.fitted is None:
            self._fit(int(planned))
        if self.fitted is not None and epoch + 1 >= self.fitted:
            self.model.stop_training = True
            return
        super().on_epoch_end(epoch, logs)

    def _fit(self, planned: int) -> None:
        left = self.budget.left()
        per_epoch = self.clock() - (self._epoch_began or 0.0)
        if left is None or per_epoch <= 0:
            return
        fits = 1 + max(math.floor(left * self.MARGIN / per_epoch), 0)
        if fits >= planned:
            return
        self.fitted = fits
        if self.schedule is not None:
            self.schedule.total_epochs = fits
        self.stopped_at = fits
        self.budget.stop(f"{self.name} fitted to the budget: {fits} of {planned} epochs "
                         f"({per_epoch:.0f} s per epoch), its schedule over {fits}")
