"""train.time_budget fits the final model's run *and* its schedule to the budget (FitHorizonToBudget).

A real ``fit_model`` on tiny data; only the clock the callback reads is a stand-in, so that an
epoch "costs" a known 10 s whatever the machine.
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from pipeline.model.deadline import FitHorizonToBudget
from pipeline.model.training import fit_model
from pipeline.time_budget import TimeBudget

VALUES = {"batch_size": 16, "learning_rate": 0.1, "lr_schedule": "cosine", "cosine_floor": 0.01}


def _fit(budget_s: float, epochs: int = 10) -> tuple[FitHorizonToBudget, keras.callbacks.History, TimeBudget]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    budget = TimeBudget(budget_s, key="train.time_budget")
    horizon = FitHorizonToBudget(budget, "model 1")
    ticks = itertools.count(step=10.0)  # every reading 10 s after the one before: the first epoch takes 10 s
    horizon.clock = lambda: next(ticks)
    history = fit_model(model, VALUES, x, y, validation_data=None, epochs=epochs, seed=0, callbacks=[horizon])
    return horizon, history, budget


def test_a_budget_too_short_for_the_plan_shortens_the_run_and_the_schedule_together() -> None:
    horizon, history, budget = _fit(budget_s=35.0)  # ~35 s left after epoch 1: 1 + floor(35 * 0.95 / 10) = 4
    assert horizon.fitted == 4 and len(history.history["loss"]) == 4
    assert horizon.schedule.total_epochs == 4
    rates = history.history["learning_rate"]
    # epoch 0 ran at the 10-epoch plan's rate (lr at 0 is lr on both), the last ones on the 4-epoch cosine
    assert rates[0] == pytest.approx(0.1)
    assert rates[3] == pytest.approx(0.001 + (0.1 - 0.001) * (1 + np.cos(np.pi * 3 / 4)) / 2, rel=1e-5)
    assert budget.stopped and "model 1 fitted to the budget: 4 of 10 epochs" in budget.what_stopped


def test_a_budget_that_holds_the_plan_changes_nothing() -> None:
    horizon, history, budget = _fit(budget_s=500.0)
    assert horizon.fitted is None and len(history.history["loss"]) == 10
    assert horizon.schedule.total_epochs == 10 and not budget.stopped


def test_a_spent_budget_keeps_the_one_epoch_done() -> None:
    horizon, history, budget = _fit(budget_s=0.001)
    assert horizon.fitted == 1 and len(history.history["loss"]) == 1 and budget.stopped


def _fit_with_deadline(budget: TimeBudget, epochs: int = 3) -> keras.callbacks.History:
    from pipeline.model.deadline import StopAtDeadline

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.integers(0, 2, 64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    deadline = StopAtDeadline(budget, "trial 0003")
    ticks = itertools.count(step=10.0)
    deadline.clock = lambda: next(ticks)  # each epoch "takes" 10 s
    return fit_model(model, {**VALUES, "lr_schedule": "constant"}, x, y, validation_data=None, epochs=epochs,
                     seed=0, callbacks=[deadline])


def test_no_epoch_starts_that_would_end_past_the_budget() -> None:
    import time

    budget = TimeBudget(25.0, key="tune.time_budget", started=time.time() - 20.0)  # 5 s left, epochs of 10 s
    history = _fit_with_deadline(budget)
    assert len(history.history["loss"]) == 1
    assert budget.is_spent() and budget.closed and budget.spent() < 25.0  # closed ahead of the clock
    assert budget.what_stopped == "trial 0003 stopped at epoch 1 of 3, another epoch would end past the budget"

    roomy = TimeBudget(25.0, key="tune.time_budget")  # 25 s left: every 10 s epoch fits
    assert len(_fit_with_deadline(roomy).history["loss"]) == 3 and not roomy.stopped and not roomy.is_spent()
