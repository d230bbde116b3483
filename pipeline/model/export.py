"""The model users get: images on their own pixel scale in, class probabilities out.

Training runs on normalized arrays (``data/processed``); the exported model puts the same
statistics in front of the trained network as a built-in Keras ``Normalization`` layer, so
``mlflow models serve``, ``mlflow.pyfunc`` and ``predict`` take raw pixels (0..16 for the
digits, 0..255 for image files) and no user has to know the training statistics. Only
built-in layers are added, and the training's fused batch norm becomes Keras' own layer
(``with_keras_batch_norm``): the file loads without custom objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np

from pipeline.model.fused_batch_norm import with_keras_batch_norm

# The layer's name is how a saved model says "I take raw pixels" (a .keras file has no other metadata).
NORMALIZATION_LAYER = "input_normalization"
INPUT_NAME = "pixels"
RAW_INPUT = "raw"
NORMALIZED_INPUT = "normalized"


def raw_input_dtype(pixel_max: float | None) -> str:
    """uint8 for 0..255 sources (what Pillow and Keras' datasets give), float32 for other scales."""
    return "uint8" if pixel_max is not None and float(pixel_max) == 255.0 else "float32"


def _mean_variance(normalization: Mapping[str, Any], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x - mean) / sqrt(variance)`` reproducing ``apply_normalization`` for every method."""
    method = normalization.get("method")
    if method == "standardize":
        mean, scale = normalization["mean"], normalization["std"]
    elif method == "minmax":
        mean, scale = normalization["min"], normalization["range"]
    elif method == "none":
        mean, scale = [0.0] * channels, [1.0] * channels
    else:
        raise ValueError(f"unknown normalization method {method!r}")
    mean, scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if mean.shape != (channels,) or scale.shape != (channels,):
        raise ValueError(f"normalization statistics for {mean.size} channel(s), but the model takes {channels}")
    return mean, scale**2


def takes_raw_input(model: keras.Model) -> bool:
    """Whether ``model`` came from ``with_input_preprocessing`` (normalization inside)."""
    return any(layer.name == NORMALIZATION_LAYER for layer in model.layers)


def input_kind(model: keras.Model) -> str:
    return RAW_INPUT if takes_raw_input(model) else NORMALIZED_INPUT


def with_input_preprocessing(model: keras.Model, normalization: Mapping[str, Any], *,
                             pixel_max: float | None = None) -> keras.Model:
    """A new functional model: raw images -> ``normalization`` (from meta.json) -> ``model``.

    ``pixel_max`` (meta.json's) picks the input dtype, see ``raw_input_dtype``; without it the
    input is float32, which takes any scale.
    """
    if takes_raw_input(model):
        raise ValueError(f"model {model.name!r} already normalizes its input")
    shape = tuple(model.input_shape[1:])
    mean, variance = _mean_variance(normalization, int(shape[-1]))
    inputs = keras.Input(shape=shape, dtype=raw_input_dtype(pixel_max), name=INPUT_NAME)
    # Plain lists, so the statistics are stored in the layer's config (no adapt(), no custom object).
    normalize = keras.layers.Normalization(axis=-1, mean=mean.tolist(), variance=variance.tolist(),
                                           name=NORMALIZATION_LAYER)
    network = with_keras_batch_norm(model)
    return keras.Model(inputs, network(normalize(inputs)), name=f"{model.name}_raw_input")
