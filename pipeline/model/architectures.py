"""Architecture families of the guide's "model selection": plain, vgg, resnet, separable.

Each family is declared in ``pipeline.registry.ARCHITECTURES`` (the names params.yaml may use) and
implemented here as a ``Family``: the function that builds one block. ``build_network`` puts the
shared parts around it (augmentation, the head, dropout, the softmax).

``blocks`` counts down-sampling steps; each block halves the feature map (max pooling,
or a stride-2 convolution in resnet) and doubles the filters. The number of blocks is
clamped to the halvings the input allows (8x8 -> 3, 32x32 -> 5, 7x5 -> 3 with "same"
padding rounding up) so that no combination of hyperparameters fails to build; the
effective depth is part of the model name (``resnet_3blocks``) and given by
``effective_blocks``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras

from pipeline.config import HEADS
from pipeline.model.fused_batch_norm import FusedBatchNormalization
from pipeline.model.initializers import kernel_initializer, layer_seed
from pipeline.model.precision import dtype_policy
from pipeline.model.regularizers import kernel_regularizer
from pipeline.registry import ARCHITECTURES

# Batch norm's moving statistics: Keras' default momentum 0.99 averages them over ~100 steps, starting
# from mean 0 / variance 1. A Hyperband rung of one epoch on a few thousand images is ~60 steps, so
# at inference a good configuration still normalizes with mostly that start and scores near chance
# (the recipe on the suite's `counting`: validation 0.20 after one epoch; 0.53 with 0.9). 0.9,
# PyTorch's default, settles within ~20 steps and was as good or better at 1, 3 and 9 epochs on
# every task of the suite (validation; bench/bn_momentum.py, BENCHMARKS.md §12).
BN_MOMENTUM = 0.9

# Keras' layer, computed by one fused op per call (fused_batch_norm: issue 21.4).
BatchNormalization = FusedBatchNormalization

# Filters double per block up to this width (or the base width when it is larger), so that
# deep stacks on large inputs stay trainable in memory.
MAX_DOUBLED_FILTERS = 512


def downsampling_steps(input_shape: tuple[int, ...]) -> int:
    """How many times the smaller spatial side can be halved (rounding up) before reaching 1."""
    size, steps = min(int(input_shape[0]), int(input_shape[1])), 0
    while size > 1:
        size = math.ceil(size / 2)
        steps += 1
    return steps


def effective_blocks(blocks: int, input_shape: tuple[int, ...]) -> int:
    """The requested ``blocks`` clamped to the input (at least one block, maybe without down-sampling)."""
    return max(1, min(int(blocks), downsampling_steps(input_shape)))


def block_filters(filters: int, index: int) -> int:
    return min(int(filters) * 2**index, max(int(filters), MAX_DOUBLED_FILTERS))


class _Layers:
    """Makes the layers of one model: seeded initializers, the shared regularizer and activation."""

    def __init__(self, values: dict[str, Any], seed: int) -> None:
        self.values = values
        self.seed = seed
        self.count = 0
        self.batch_norm = bool(values["batch_norm"])
        self.activation = values["activation"]
        self.kernel_size = int(values["kernel_size"])

    def _init(self) -> keras.initializers.Initializer:
        self.count += 1
        return kernel_initializer(self.values["init"], layer_seed(self.seed, self.count),
                                  float(self.values["init_stddev"]))

    def _reg(self) -> keras.regularizers.Regularizer | None:
        return kernel_regularizer(self.values["regularizer"], float(self.values["reg_strength"]))

    def conv(self, x: Any, filters: int, kernel_size: int | None = None, strides: int = 1) -> Any:
        return keras.layers.Conv2D(filters, kernel_size or self.kernel_size, strides=strides, padding="same",
                                   use_bias=not self.batch_norm, kernel_initializer=self._init(),
                                   kernel_regularizer=self._reg())(x)

    def separable_conv(self, x: Any, filters: int) -> Any:
        return keras.layers.SeparableConv2D(
            filters, self.kernel_size, padding="same", use_bias=not self.batch_norm,
            depthwise_initializer=self._init(), pointwise_initializer=self._init(),
            depthwise_regularizer=self._reg(), pointwise_regularizer=self._reg())(x)

    def dense(self, x: Any, units: int, activation: str | None = None, dtype: str | None = None) -> Any:
        return keras.layers.Dense(units, activation=activation, kernel_initializer=self._init(),
                                  kernel_regularizer=self._reg(), dtype=dtype)(x)

    def norm(self, x: Any) -> Any:
        return BatchNormalization(momentum=BN_MOMENTUM)(x) if self.batch_norm else x

    def act(self, x: Any) -> Any:
        return keras.layers.Activation(self.activation)(x)

    def dropout(self, x: Any) -> Any:
        rate = float(self.values["dropout"])
        if rate <= 0:
            return x
        self.count += 1
        return keras.layers.Dropout(rate, seed=layer_seed(self.seed, self.count))(x)


def augmentation_layers(values: dict[str, Any], seed: int) -> list[keras.layers.Layer]:
    """Keras' random preprocessing layers for the ``augment_*`` values: identity outside training.

    ``nearest`` fill repeats the border (background for digits, edges for photos) instead of
    inventing a constant that means something else after normalization.
    """
    layers: list[keras.layers.Layer] = []
    translate = float(values.get("augment_translate", 0.0))
    rotate = float(values.get("augment_rotate", 0.0))
    zoom = float(values.get("augment_zoom", 0.0))
    if values.get("augment_flip", False):
        layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed(seed, 901)))
    if rotate > 0:
        layers.append(keras.layers.RandomRotation(rotate / 360.0, fill_mode="nearest", seed=layer_seed(seed, 902)))
    if zoom > 0:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="nearest", seed=layer_seed(seed, 903)))
    if translate > 0:
        layers.append(keras.layers.RandomTranslation(translate, translate, fill_mode="nearest",
                                                     seed=layer_seed(seed, 904)))
    return layers


def _pool(x: Any, downsample: bool) -> Any:
    return keras.layers.MaxPooling2D(2, padding="same")(x) if downsample else x


def _plain(make: _Layers, x: Any, filters: int, downsample: bool) -> Any:
    return _pool(make.act(make.norm(make.conv(x, filters))), downsample)


def _vgg(make: _Layers, x: Any, filters: int, downsample: bool) -> Any:
    x = make.act(make.norm(make.conv(x, filters)))
    x = make.act(make.norm(make.conv(x, filters)))
    return _pool(x, downsample)


def _separable(make: _Layers, x: Any, filters: int, downsample: bool) -> Any:
    return _pool(make.act(make.norm(make.separable_conv(x, filters))), downsample)


def _residual(make: _Layers, x: Any, filters: int, downsample: bool) -> Any:
    strides = 2 if downsample else 1
    y = make.act(make.norm(make.conv(x, filters, strides=strides)))
    y = make.norm(make.conv(y, filters))
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:  # projection shortcut
        shortcut = make.norm(make.conv(x, filters, kernel_size=1, strides=strides))
    return make.act(keras.layers.Add()([y, shortcut]))


@dataclass(frozen=True)
class Family:
    """How an architecture family builds: ``block(make, x, filters, downsample)`` per block; ``stem``: one
    convolution before the first block (a residual block needs features to add to)."""

    block: Callable[[_Layers, Any, int, bool], Any]
    stem: bool = False


for _name, _family in (("plain", Family(_plain)), ("vgg", Family(_vgg)), ("separable", Family(_separable)),
                       ("resnet", Family(_residual, stem=True))):
    ARCHITECTURES.implement(_name, _family)
del _name, _family


def build_network(values: dict[str, Any], input_shape: tuple[int, ...], num_classes: int,
                  seed: int = 42, precision: str = "float32") -> keras.Model:
    """The (uncompiled) classifier for hyperparameter ``values``; softmax over ``num_classes``.

    ``precision``: the Keras dtype policy of its layers (``pipeline.model.precision``); the softmax
    layer is float32 whatever it is, so the loss and the outputs are float32.
    """
    with dtype_policy(precision):
        return _network(values, input_shape, num_classes, seed)


def _network(values: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, seed: int) -> keras.Model:
    architecture, head = values["architecture"], values["head"]
    family: Family = ARCHITECTURES.implementation(architecture)  # an unknown name: one line with the known ones
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; allowed: {', '.join(HEADS)}")
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) == 2:
        input_shape = (*input_shape, 1)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width[, channels]), got {input_shape}")

    make = _Layers(values, seed)
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for layer in augmentation_layers(values, seed):
        x = layer(x)
    depth = effective_blocks(int(values["blocks"]), input_shape)
    if family.stem:
        x = make.act(make.norm(make.conv(x, block_filters(values["filters"], 0))))
    size = min(input_shape[:2])
    for index in range(depth):
        downsample = size > 1
        x = family.block(make, x, block_filters(values["filters"], index), downsample)
        size = math.ceil(size / 2) if downsample else size

    x = keras.layers.GlobalAveragePooling2D()(x) if head == "gap" else keras.layers.Flatten()(x)
    x = make.dropout(x)
    if int(values["dense_units"]) > 0:
        x = make.dropout(make.act(make.dense(x, int(values["dense_units"]))))
    outputs = make.dense(x, int(num_classes), activation="softmax", dtype="float32")
    return keras.Model(inputs, outputs, name=f"{architecture}_{depth}blocks")
