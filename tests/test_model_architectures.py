"""Architectures fit any input: depth is clamped to the halvings the input allows, never a crash."""

from __future__ import annotations

import itertools

import keras
import keras_tuner
import numpy as np
import pytest

from pipeline.config import ARCHITECTURES, HEADS, SearchSpaceConfig
from pipeline.model import CNNHyperModel
from pipeline.model.architectures import build_network, downsampling_steps, effective_blocks

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
