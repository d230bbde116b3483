"""A Keras callback that ends training cleanly at the first epoch end after a ``TimeBudget`` is spent.

The epoch that runs out the budget is finished (its metrics logged, checkpoints written as usual),
then ``model.stop_training`` ends ``fit`` the way early stopping does: a tuner scores the trial on
the epochs it reached, the final training keeps the model as it is.
"""

from __future__ import annotations

from typing import Any

import keras

from pipeline.time_budget import TimeBudget


class StopAtDeadline(keras.callbacks.Callback):
    """``name`` says what it stops in the budget's note, e.g. ``trial 0004`` or ``model 2``."""

    def __init__(self, budget: TimeBudget, name: str = "training") -> None:
        super().__init__()
        self.budget, self.name = budget, name
        self.stopped_at: int | None = None  # epochs done when it stopped training

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self.budget.is_spent():
            return
        total = (self.params or {}).get("epochs")
        if total is not None and epoch + 1 >= int(total):
            return  # the last epoch anyway: nothing was cut
        self.model.stop_training = True
        self.stopped_at = epoch + 1
        of = f" of {total}" if total is not None else ""
        self.budget.stop(f"{self.name} stopped at epoch {epoch + 1}{of}")
