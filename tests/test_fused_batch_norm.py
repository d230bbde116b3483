"""The fused batch norm (``pipeline.model.fused_batch_norm``) computes Keras' layer in far fewer ops,
and the model users get holds Keras' own layer."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipeline.model.final import average_ensemble
from pipeline.model.fused_batch_norm import FusedBatchNormalization, with_keras_batch_norm
from pipeline.model.precision import dtype_policy


def _step(layer: keras.layers.Layer, x: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """Outputs, gradients (input, gamma, beta), moving statistics after one training call, inference outputs."""
    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        loss = tf.reduce_sum(tf.cast(layer(tensor, training=True), tf.float32) * weights)
    gradients = tape.gradient(loss, [tensor, layer.gamma.value, layer.beta.value])
    outputs = layer(tensor, training=True)  # the same batch again: statistics moved twice
    return [np.asarray(v, dtype=np.float64) for v in
            (outputs, *gradients, layer.moving_mean, layer.moving_variance, layer(tensor, training=False))]


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_float16", 4e-3)])
def test_training_and_inference_match_keras(policy: str, tolerance: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(16, 5, 5, 7)).astype("float32")
    weights = rng.normal(size=x.shape).astype("float32")
    results = []
    with dtype_policy(policy):
        for kind in (keras.layers.BatchNormalization, FusedBatchNormalization):
            layer = kind(momentum=0.9)
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(0.5, 1.5, 7).astype("float32"))
            layer.beta.assign(np.linspace(-0.3, 0.3, 7).astype("float32"))
            results.append(_step(layer, x, weights))
            assert layer.compute_dtype == ("float16" if policy == "mixed_float16" else "float32")
    names = ("outputs", "input gradient", "gamma gradient", "beta gradient", "moving mean", "moving variance",
             "inference outputs")
    for name, keras_value, fused_value in zip(names, *results, strict=True):
        scale = max(1.0, float(np.max(np.abs(keras_value))))
        assert np.max(np.abs(keras_value - fused_value)) <= tolerance * scale, name
    # the moving variance is the uncorrected one, as Keras': not the kernel's n/(n-1) (1.0025 here)
    assert np.allclose(results[0][5], results[1][5], rtol=1e-6)


def _small_model(kind: type, seed: int = 3, **norm: Any) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
                             kind(momentum=0.9, **norm), keras.layers.ReLU(), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])


def _fitted(kind: type, steps: int = 6) -> keras.Model:
    model = _small_model(kind)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    for _ in range(steps):
        model.train_on_batch(rng.normal(size=(8, 6, 6, 2)).astype("float32"), rng.integers(0, 3, size=8))
    return model


def test_a_fitted_model_matches_keras_and_traces_fewer_ops() -> None:
    plain, fused = _fitted(keras.layers.BatchNormalization), _fitted(FusedBatchNormalization)
    for a, b in zip(plain.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

    def ops(model: keras.Model) -> list[str]:
        data = (tf.TensorSpec((8, 6, 6, 2), tf.float32), tf.TensorSpec((8,), tf.int64))
        concrete = tf.function(model.train_step).get_concrete_function(data)
        return [op.type for op in concrete.graph.get_operations()]

    plain_ops, fused_ops = ops(plain), ops(fused)
    assert "FusedBatchNormV3" in fused_ops and "FusedBatchNormV3" not in plain_ops
    assert len(fused_ops) <= len(plain_ops) - 40, (len(fused_ops), len(plain_ops))  # 197 -> 152 ops here


@pytest.mark.parametrize("case", ["dense input", "renorm", "mask", "tiny epsilon", "distribution strategy"])
def test_what_the_kernel_does_not_cover_runs_keras_own_call(case: str) -> None:
    rng = np.random.default_rng(2)
    kwargs: dict[str, Any] = {"renorm": True} if case == "renorm" else {}
    if case == "tiny epsilon":
        kwargs["epsilon"] = 1e-6
    x = rng.normal(size=(8, 5) if case == "dense input" else (8, 3, 3, 5)).astype("float32")
    mask = tf.constant(rng.random((8, 3, 3)) > 0.3) if case == "mask" else None
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0") if case == "distribution strategy" else None
    outputs = []
    for kind in (keras.layers.BatchNormalization, FusedBatchNormalization):
        with strategy.scope() if strategy else contextlib.nullcontext():
            layer = kind(**kwargs)
            layer.build(x.shape)
            outputs.append([np.asarray(layer(x, training=True, mask=mask)), np.asarray(layer.moving_variance)])
    for keras_value, fused_value in zip(*outputs, strict=True):
        np.testing.assert_array_equal(keras_value, fused_value)  # the same code ran


def test_a_saved_model_loads_with_the_layer_registered(tmp_path: Path) -> None:
    model = _fitted(FusedBatchNormalization)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert any(isinstance(layer, FusedBatchNormalization) for layer in loaded.layers)
    x = np.random.default_rng(4).normal(size=(5, 6, 6, 2)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def _exported_loads_without_this_package(model: keras.Model, path: Path, x: np.ndarray) -> np.ndarray:
    model.save(path)
    np.save(path.with_suffix(".npy"), x)
    code = ("import sys, keras, numpy as np\n"
            f"m = keras.saving.load_model({str(path)!r})\n"
            "assert not any(name.startswith('pipeline') for name in sys.modules), 'imported the pipeline'\n"
            f"np.save({str(path.with_suffix('.out.npy'))!r}, m.predict(np.load({str(path.with_suffix('.npy'))!r}),"
            " verbose=0))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=path.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return np.load(path.with_suffix(".out.npy"))


@pytest.mark.parametrize("members", [1, 2])
def test_the_exported_model_holds_keras_layers_and_predicts_the_same(tmp_path: Path, members: int) -> None:
    models = [_fitted(FusedBatchNormalization)] + [_small_model(FusedBatchNormalization, seed=9)] * (members - 1)
    model = average_ensemble(models, (6, 6, 2))
    exported = with_keras_batch_norm(model)

    def layers(m: keras.Model) -> list[keras.layers.Layer]:
        return [inner for layer in m.layers
                for inner in (layers(layer) if isinstance(layer, keras.Model) else [layer])]

    assert not any(isinstance(layer, FusedBatchNormalization) for layer in layers(exported))
    assert sum(type(layer) is keras.layers.BatchNormalization for layer in layers(exported)) == members
    assert sum(isinstance(layer, FusedBatchNormalization) for layer in layers(model)) == members  # left as it was
    for a, b in zip(model.get_weights(), exported.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(5).normal(size=(7, 6, 6, 2)).astype("float32")
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(exported.predict(x, verbose=0), expected, atol=1e-6)
    if members > 1:  # nested models; one model alone goes through `mlflow models serve` in tests/test_serve.py
        np.testing.assert_allclose(_exported_loads_without_this_package(exported, tmp_path / "e.keras", x),
                                   expected, atol=1e-6)


def test_a_model_without_the_fused_layer_is_exported_as_it_is() -> None:
    model = _small_model(keras.layers.BatchNormalization)
    assert with_keras_batch_norm(model) is model
