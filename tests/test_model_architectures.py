"""Architectures learn, and fit any input: depth is clamped to the halvings the input allows, never a crash."""

from __future__ import annotations

import itertools

import keras
import keras_tuner
import numpy as np
import pytest

from pipeline.config import ARCHITECTURES, HEADS, SearchSpaceConfig
from pipeline.model import CNNHyperModel
from pipeline.model.architectures import Family, build_network, downsampling_steps, effective_blocks
from pipeline.model.fused_batch_norm import FusedBatchNormalization
from pipeline.registry import ARCHITECTURES as REGISTRY
from pipeline.registry import ArchitectureKind

VALUES = dict(architecture="plain", blocks=8, filters=2, kernel_size=5, head="flatten", dense_units=0,
              activation="relu", init="glorot_uniform", init_stddev=0.05, regularizer="l2", reg_strength=1e-4,
              dropout=0.0, batch_norm=True)


@pytest.mark.parametrize(("shape", "steps"), [((8, 8, 1), 3), ((32, 32, 3), 5), ((28, 28, 1), 5), ((7, 5, 2), 3),
                                              ((1, 1, 1), 0), ((2, 64, 1), 1), ((224, 224, 3), 8)])
def test_downsampling_steps(shape, steps) -> None:
    assert downsampling_steps(shape) == steps
    assert effective_blocks(8, shape) == max(1, min(8, steps))
    assert effective_blocks(2, shape) == max(1, min(2, steps))


COMBOS = list(itertools.product(ARCHITECTURES, HEADS, [(8, 8, 1), (7, 5, 2), (1, 1, 1), (3, 12, 3)]))


@pytest.mark.parametrize(("architecture", "head", "shape"), COMBOS,
                         ids=[f"{a}-{h}-{'x'.join(map(str, s))}" for a, h, s in COMBOS])
def test_deepest_request_on_small_inputs_builds(architecture: str, head: str, shape: tuple[int, ...]) -> None:
    values = {**VALUES, "architecture": architecture, "head": head}
    model = build_network(values, shape, num_classes=4, seed=0)
    depth = effective_blocks(8, shape)
    assert model.name == f"{architecture}_{depth}blocks"
    out = model(np.zeros((2, *shape), dtype="float32"))
    assert tuple(out.shape) == (2, 4)
    assert np.allclose(np.array(out).sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_effective_depth_on_cifar_sized_input(architecture: str) -> None:
    model = build_network({**VALUES, "architecture": architecture, "head": "gap"}, (32, 32, 3), 10)
    assert model.name == f"{architecture}_5blocks"
    # five halvings: the last feature map is 1x1, the filters doubled per block
    pool = next(layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    assert tuple(pool.input.shape[1:]) == (1, 1, 2 * 2**4)


def test_residual_blocks_use_projection_shortcuts() -> None:
    model = build_network({**VALUES, "architecture": "resnet", "blocks": 2}, (8, 8, 1), 3)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    one_by_one = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
                  and layer.kernel_size == (1, 1) and layer.strides == (2, 2)]
    assert len(adds) == 2 and len(one_by_one) == 2


@pytest.mark.parametrize(("shape", "classes"), [((8, 8, 1), 2), ((12, 10, 3), 7), ((16, 16), 5)])
def test_any_input_shape_and_class_count_through_the_hypermodel(shape, classes) -> None:
    space = SearchSpaceConfig(architecture="vgg", blocks=8, head="flatten", batch_size=4, lr_schedule="cosine")
    hypermodel = CNNHyperModel(space, shape, classes, total_epochs=1)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    model.run_eagerly = True
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
    history = hypermodel.fit(hp, model, x, np.arange(4) % classes, epochs=1)
    assert model.output_shape == (None, classes) and np.isfinite(history.history["loss"][0])


# ------------------------------------------------------------------ every family learns
LEARNER = dict(blocks=2, filters=8, kernel_size=3, head="gap", dense_units=16, activation="relu", init="he_normal",
               init_stddev=0.05, regularizer="none", reg_strength=1e-4, dropout=0.0, batch_norm=False)
MIN_ACCURACY = 0.9  # each family reaches 1.0 here; chance is 1/3


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal stripes, vertical stripes or a checkerboard under noise, 8x8x3: every image has the
    same mean, so only a network whose convolutions see the pattern can tell the classes apart."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    r = np.arange(8) % 2
    patterns = np.stack([np.repeat(r[:, None], 8, 1), np.repeat(r[None, :], 8, 0), (r[:, None] + r[None, :]) % 2])
    x = patterns[y][..., None] + rng.normal(0.0, 0.4, (n, 8, 8, 3))
    return x.astype("float32"), y


def validation_accuracy(architecture: str) -> float:
    keras.utils.set_random_seed(0)
    model = build_network({**LEARNER, "architecture": architecture}, (8, 8, 3), num_classes=3, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(*stripes(240, seed=0), epochs=5, batch_size=32, verbose=0)
    return float(model.evaluate(*stripes(150, seed=1), verbose=0)[1])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_learns_a_separable_task(architecture: str) -> None:
    assert validation_accuracy(architecture) >= MIN_ACCURACY


def test_a_family_whose_blocks_drop_their_convolution_stays_near_chance() -> None:
    """The task above is no gift: blocks that only pool leave the network at chance, below the bar."""
    REGISTRY.register(ArchitectureKind("pool_only"))
    REGISTRY.implement("pool_only", Family(lambda make, x, filters, downsample: keras.layers.MaxPooling2D(
        2, padding="same")(x) if downsample else x))
    try:
        assert validation_accuracy("pool_only") < 0.6
    finally:
        REGISTRY.unregister("pool_only")


def test_batch_norm_statistics_settle_within_one_short_epoch() -> None:
    """After 30 training steps the moving statistics that inference uses match the data's own.

    With Keras' default momentum (0.99) three quarters of the moving variance would still be its
    starting value 1 after 30 steps, and a Hyperband rung of one epoch would judge a batch-norm
    configuration with statistics it never saw (bench/bn_momentum.py)."""
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(960, 8, 8, 1)) * 6.0 + 3.0).astype("float32")  # activations far from mean 0 / variance 1
    y = (x.mean(axis=(1, 2, 3)) > 3.0).astype("int32")
    values = {**VALUES, "blocks": 1, "filters": 4, "kernel_size": 3, "head": "gap", "regularizer": "none"}
    model = build_network(values, (8, 8, 1), num_classes=2, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)  # 30 steps; a rate of 0 keeps the kernels
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert isinstance(norm, FusedBatchNormalization)  # the statistics the fused kernel feeds, as Keras' own
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    activations = np.array(keras.Model(model.inputs, conv.output)(x[-320:]))
    true_mean, true_var = activations.mean(axis=(0, 1, 2)), activations.var(axis=(0, 1, 2))
    moving_mean, moving_var = np.array(norm.moving_mean), np.array(norm.moving_variance)
    assert np.all(np.abs(moving_var - true_var) <= 0.15 * true_var), (moving_var, true_var)
    assert np.all(np.abs(moving_mean - true_mean) <= 0.15 * np.sqrt(true_var) + 1e-3), (moving_mean, true_mean)
