"""Kernel initializers of section 2.1.1, seeded per layer.

Every conv and dense kernel gets its own seed (derived from the model seed and the
layer's position) so that layers of the same shape do not start identical, and the same
seed with the same hyperparameters always gives the same initial weights.
"""

from __future__ import annotations

import keras

from pipeline.config import INITIALIZERS

_KERAS_CLASSES = {
    "glorot_uniform": keras.initializers.GlorotUniform,
    "glorot_normal": keras.initializers.GlorotNormal,
    "he_normal": keras.initializers.HeNormal,
    "he_uniform": keras.initializers.HeUniform,
    "lecun_normal": keras.initializers.LecunNormal,
}


def layer_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed for the ``index``-th initialized layer of a model."""
    return (int(seed) * 1_000_003 + 7919 * (index + 1)) % (2**31 - 1)


def kernel_initializer(name: str, seed: int, stddev: float = 0.05) -> keras.initializers.Initializer:
    """The Keras initializer called ``name``; ``stddev`` sets random_normal's standard
    deviation and random_uniform's half-width."""
    if name == "zeros":
        return keras.initializers.Zeros()
    if name == "random_normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=float(stddev), seed=seed)
    if name == "random_uniform":
        return keras.initializers.RandomUniform(minval=-float(stddev), maxval=float(stddev), seed=seed)
    if name in _KERAS_CLASSES:
        return _KERAS_CLASSES[name](seed=seed)
    raise ValueError(f"unknown initializer {name!r}; allowed: {', '.join(INITIALIZERS)}")
