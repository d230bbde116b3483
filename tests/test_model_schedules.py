"""Learning-rate schedules: closed forms, the rate seen during a real fit, Hyperband continuation."""

from __future__ import annotations

import math

import keras
import keras_tuner
import numpy as np
import pytest

from pipeline.config import LR_SCHEDULES, SearchSpaceConfig
from pipeline.model import CNNHyperModel, learning_rate_at
from pipeline.registry import SCHEDULES

LR = 0.1
BASE = dict(learning_rate=LR, step_decay_factor=0.5, step_decay_epochs=2, exp_decay_rate=0.8,
            cosine_floor=0.1, restart_epochs=1, restart_mult=2.0, warmup_epochs=1)
TOTAL = 4
STEPS = 2  # 16 samples, batch 8


def values_for(schedule: str) -> dict:
    return {**BASE, "lr_schedule": schedule}


def cos_between(hi: float, lo: float, t: float) -> float:
    return lo + (hi - lo) * (1 + math.cos(math.pi * t)) / 2


# (schedule, epoch, expected) written out by hand from the definitions
CLOSED_FORMS = [
    ("constant", 0, LR), ("constant", 3.5, LR),
    ("step", 0, LR), ("step", 1.9, LR), ("step", 2, LR * 0.5), ("step", 5, LR * 0.25),
    ("exponential", 0, LR), ("exponential", 1, LR * 0.8), ("exponential", 2.5, LR * 0.8**2.5),
    ("cosine", 0, LR), ("cosine", 2, 0.01 + 0.09 * 0.5), ("cosine", 4, 0.01), ("cosine", 6, 0.01),
    # SGDR periods: [0, 1), [1, 3), [3, 7)
    ("cosine_restarts", 0, LR), ("cosine_restarts", 0.5, cos_between(LR, 0.01, 0.5)),
    ("cosine_restarts", 1, LR), ("cosine_restarts", 2, cos_between(LR, 0.01, 0.5)),
    ("cosine_restarts", 3, LR), ("cosine_restarts", 6, cos_between(LR, 0.01, 0.75)),
    # warmup from the floor to lr over 1 epoch, then cosine over the remaining 3
    ("warmup_cosine", 0, 0.01), ("warmup_cosine", 0.5, 0.055), ("warmup_cosine", 1, LR),
    ("warmup_cosine", 2.5, cos_between(LR, 0.01, 0.5)), ("warmup_cosine", 4, 0.01),
]


@pytest.mark.parametrize(("schedule", "epoch", "expected"), CLOSED_FORMS)
def test_closed_form(schedule: str, epoch: float, expected: float) -> None:
    assert learning_rate_at(values_for(schedule), epoch, total_epochs=TOTAL) == pytest.approx(expected, rel=1e-9)


def test_total_epochs_falls_back_to_values_and_is_required_for_cosine() -> None:
    values = values_for("cosine")
    assert learning_rate_at({**values, "tuner/epochs": 4}, 2) == pytest.approx(0.055)
    assert learning_rate_at({**values, "total_epochs": 4, "tuner/epochs": 2}, 2) == pytest.approx(0.055)
    with pytest.raises(ValueError, match="total_epochs"):
        learning_rate_at(values, 2)


def test_sgdr_with_constant_period() -> None:
    values = {**values_for("cosine_restarts"), "restart_mult": 1.0, "restart_epochs": 2}
    assert learning_rate_at(values, 5) == pytest.approx(learning_rate_at(values, 1))


class RateRecorder(keras.callbacks.Callback):
    """The optimizer's rate at every batch, as (absolute epoch, batch, rate)."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[tuple[int, int, float]] = []
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append((self.epoch, batch, float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))))


def tiny_hypermodel(schedule: str, total_epochs: int = TOTAL, **overrides) -> tuple[CNNHyperModel,
                                                                                 keras_tuner.HyperParameters]:
    fixed = {**{k: v for k, v in BASE.items() if k != "learning_rate"}, **overrides}
    space = SearchSpaceConfig(
        architecture="plain", blocks=1, filters=2, kernel_size=3, head="gap", dense_units=0, init="he_normal",
        regularizer="none", reg_strength=1e-4, dropout=0.0, batch_norm=False, weight_decay=1e-4,
        optimizer="sgd", learning_rate=LR, lr_schedule=schedule, batch_size=8, **fixed,
    )
    return CNNHyperModel(space, (8, 8, 1), 3, seed=1, total_epochs=total_epochs), keras_tuner.HyperParameters()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16)


def fit(schedule: str, data, initial_epoch: int, epochs: int):
    hypermodel, hp = tiny_hypermodel(schedule)
    model = hypermodel.build(hp)
    model.run_eagerly = True  # faster for tiny fits; the graph path is checked in test_rate_reaches_the_graph
    recorder = RateRecorder()
    history = hypermodel.fit(hp, model, *data, validation_data=data, epochs=epochs, initial_epoch=initial_epoch,
                             callbacks=[recorder], batch_size=999)
    return history, recorder


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_rate_used_during_fit_and_after_continuation(schedule: str, data) -> None:
    history, recorder = fit(schedule, data, initial_epoch=0, epochs=TOTAL)
    values = values_for(schedule)
    # every epoch logs its starting rate, equal to the closed form
    assert history.history["learning_rate"] == pytest.approx(
        [learning_rate_at(values, e, total_epochs=TOTAL) for e in range(TOTAL)], rel=1e-6)
    # batch_size came from hp (8 -> 2 steps per epoch), not from fit's kwargs
    assert [(e, b) for e, b, _ in recorder.rates] == [(e, b) for e in range(TOTAL) for b in range(STEPS)]
    # and every batch trains at the closed form of its fractional epoch
    for epoch, batch, rate in recorder.rates:
        assert rate == pytest.approx(learning_rate_at(values, epoch + batch / STEPS, total_epochs=TOTAL), rel=1e-6)

    # Hyperband continuation: a fresh model fit from initial_epoch=k trains on at the same rates
    k = 2
    continued, continued_recorder = fit(schedule, data, initial_epoch=k, epochs=TOTAL)
    assert continued.history["learning_rate"] == pytest.approx(history.history["learning_rate"][k:], rel=1e-6)
    expected = [r for r in recorder.rates if r[0] >= k]
    # pytest.approx (>= 9) refuses lists of tuples: the (epoch, batch) positions must match exactly,
    # only the rates are floats compared with a tolerance
    assert [(e, b) for e, b, _ in continued_recorder.rates] == [(e, b) for e, b, _ in expected]
    assert [rate for _, _, rate in continued_recorder.rates] == pytest.approx([rate for _, _, rate in expected],
                                                                              rel=1e-6)


def test_history_epochs_are_absolute_for_loggers(data) -> None:
    seen = []

    class Logger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, logs["learning_rate"]))

    hypermodel, hp = tiny_hypermodel("exponential")
    hypermodel.fit(hp, hypermodel.build(hp), *data, epochs=3, initial_epoch=1, callbacks=[Logger()])
    assert seen == [(1, pytest.approx(LR * 0.8)), (2, pytest.approx(LR * 0.64))]


def test_rate_reaches_the_graph(data) -> None:
    """Compiled (graph-mode) training uses the callback's rate, not the one the optimizer was built with.

    The cosine with a zero floor reaches 0 at the horizon: a run continued there must leave
    its weights alone although its optimizer was compiled with the initial rate.
    """
    hypermodel, hp = tiny_hypermodel("cosine", total_epochs=1, cosine_floor=0.0)
    for initial_epoch, should_change in ((1, False), (0, True)):
        model = hypermodel.build(hp)
        assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(LR)
        before = [np.array(w) for w in model.get_weights()]
        hypermodel.fit(hp, model, *data, epochs=initial_epoch + 1, initial_epoch=initial_epoch)
        after = [np.array(w) for w in model.get_weights()]
        changed = any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        assert changed is should_change


@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_a_schedule_reads_exactly_the_knobs_it_declares(schedule: str) -> None:
    """The report and the ablation trust the declaration (a knob acts only under the schedules that declare
    it): the rate needs no other key, and each declared knob changes it somewhere."""
    entry = SCHEDULES.get(schedule)
    epochs = [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 5]

    def rates(**changed: float) -> list[float]:
        values = {"learning_rate": LR, **{k.name: BASE.get(k.name, k.default) for k in entry.knobs}, **changed}
        return [entry.rate(values, epoch, TOTAL) for epoch in epochs]  # a KeyError: an undeclared key is read

    reference = rates()
    for knob in entry.knobs:
        value = BASE.get(knob.name, knob.default)
        other = value + 1 if knob.kind == "int" else value * 0.5 if value * 0.5 >= (knob.ge or 0) else value * 1.5
        assert rates(**{knob.name: other}) != pytest.approx(reference), f"{schedule} ignores its knob {knob.name}"


def test_an_unknown_schedule_is_one_line_with_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        learning_rate_at({"learning_rate": LR, "lr_schedule": "linear"}, 0)
    assert str(caught.value) == ("search_space.lr_schedule: unknown lr_schedule 'linear'; allowed: "
                                 + ", ".join(LR_SCHEDULES))
