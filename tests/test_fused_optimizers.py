"""The fused optimizers (``pipeline.model.fused_optimizers``) train as Keras' own, with far fewer ops per step."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.model.fused_optimizers import FUSED, fused_class
from pipeline.model.optimizers import build_optimizer, optimizer_spec

VALUES = {"momentum": 0.9, "weight_decay": 0.01}
NAMES = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw")


def _model(seed: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Flatten(), keras.layers.Dense(3)])


def _trained(optimizer: keras.optimizers.Optimizer, steps: int = 5, before: Any = None) -> list[np.ndarray]:
    """Weights and optimizer variables after ``steps`` seeded batches; ``before(optimizer)`` runs once it is built."""
    model = _model()
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if before is not None:
        optimizer.build(model.trainable_variables)
        before(optimizer)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        model.train_on_batch(rng.normal(size=(8, 6, 6, 1)).astype("float32"), rng.integers(0, 3, size=8))
    return [v.numpy() for v in [*model.weights, *optimizer.variables]]


def _stock(values: dict, learning_rate: float) -> keras.optimizers.Optimizer:
    kind, kwargs = optimizer_spec(values, learning_rate)
    return kind(**kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_a_fused_optimizer_trains_as_keras_own(name: str) -> None:
    values = {**VALUES, "optimizer": name}
    keras.backend.clear_session()
    ours = build_optimizer(values, 0.05)
    keras.backend.clear_session()
    stock = _stock(values, 0.05)
    assert type(ours) is FUSED[type(stock)] and isinstance(ours, type(stock))
    assert {**ours.get_config(), "name": None} == {**stock.get_config(), "name": None}
    expected, got = _trained(stock), _trained(ours)
    assert len(got) == len(expected)  # the same variables (states saved by either load into the other)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=2e-6)


def _update_ops(optimizer: keras.optimizers.Optimizer) -> int:
    model = _model()
    optimizer.build(model.trainable_variables)
    grads = [tf.ones_like(v.value) for v in model.trainable_variables]

    @tf.function
    def step() -> None:
        optimizer.apply(grads, model.trainable_variables)

    return len(step.get_concrete_function().graph.get_operations())


@pytest.mark.parametrize("name", ["adam", "adamw", "rmsprop", "nesterov"])
def test_a_fused_update_builds_far_fewer_ops(name: str) -> None:
    values = {**VALUES, "optimizer": name}
    stock, ours = _update_ops(_stock(values, 0.05)), _update_ops(build_optimizer(values, 0.05))
    assert ours < 0.6 * stock, (ours, stock)


def test_what_the_kernels_do_not_cover_is_left_to_keras() -> None:
    for kind, kwargs in ((keras.optimizers.Adam, {"amsgrad": True}), (keras.optimizers.RMSprop, {"centered": True})):
        for want, have in zip(_trained(kind(0.01, **kwargs)), _trained(fused_class(kind)(0.01, **kwargs)), strict=True):
            np.testing.assert_array_equal(have, want)  # Keras' own step, unchanged
    assert fused_class(keras.optimizers.Lion) is keras.optimizers.Lion


@pytest.mark.parametrize("name", ["rmsprop", "adamw"])
def test_a_training_state_saved_with_keras_optimizer_continues_in_the_fused_one(name: str, tmp_path) -> None:
    """A search saved before the fused optimizers resumes: the saved moments load, none restarts at zero."""
    from pipeline.model.training import load_training_state, save_training_state

    values = {**VALUES, "optimizer": name}
    rng = np.random.default_rng(1)
    batches = [(rng.normal(size=(8, 6, 6, 1)).astype("float32"), rng.integers(0, 3, size=8)) for _ in range(6)]

    def compiled(optimizer: keras.optimizers.Optimizer) -> keras.Model:
        model = _model()
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    straight = compiled(_stock(values, 0.05))
    for batch in batches:
        straight.train_on_batch(*batch)
    first = compiled(_stock(values, 0.05))
    for batch in batches[:3]:
        first.train_on_batch(*batch)
    save_training_state(first, tmp_path / "state.weights.h5")
    resumed = compiled(build_optimizer(values, 0.05))
    load_training_state(resumed, tmp_path / "state.weights.h5")
    for batch in batches[3:]:
        resumed.train_on_batch(*batch)
    for want, have in zip(straight.weights, resumed.weights, strict=True):
        np.testing.assert_allclose(have.numpy(), want.numpy(), rtol=2e-5, atol=2e-6)


def test_rmsprop_scratch_slot_left_nan_by_a_diverged_run_does_not_leak_into_the_next() -> None:
    """The ablation reuses a traced model and resets the optimizer's variables only: the scratch slot
    RMSprop's kernel needs is not among them."""
    values = {**VALUES, "optimizer": "rmsprop"}

    def poison(optimizer: keras.optimizers.Optimizer) -> None:
        for scratch in optimizer._increments:
            scratch.assign(tf.fill(scratch.shape, float("nan")))

    expected, got = _trained(_stock(values, 0.05)), _trained(build_optimizer(values, 0.05), before=poison)
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=2e-5, atol=2e-6)
