"""Optimizers of section 2.3; the learning rate is then driven by ``schedules.ScheduleCallback``."""

from __future__ import annotations

from typing import Any

import keras

from pipeline.config import OPTIMIZERS
from pipeline.model.fused_optimizers import fused_class


def build_optimizer(values: dict[str, Any], learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer named ``values["optimizer"]`` starting at ``learning_rate``.

    ``momentum`` applies to momentum/nesterov only and ``weight_decay`` (decoupled, per
    step and scaled by the learning rate as in Keras) to adamw only. On TensorFlow each is the
    fused version of Keras' optimizer (``fused_optimizers``: one training op per variable).
    """
    kind, kwargs = optimizer_spec(values, learning_rate)
    return fused_class(kind)(**kwargs)


def optimizer_spec(values: dict[str, Any], learning_rate: float) -> tuple[type, dict[str, Any]]:
    """Keras' optimizer class and its arguments for ``values["optimizer"]``."""
    name = values["optimizer"]
    lr = float(learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD, {"learning_rate": lr}
    if name == "momentum":
        return keras.optimizers.SGD, {"learning_rate": lr, "momentum": float(values["momentum"])}
    if name == "nesterov":
        return keras.optimizers.SGD, {"learning_rate": lr, "momentum": float(values["momentum"]), "nesterov": True}
    if name == "rmsprop":
        return keras.optimizers.RMSprop, {"learning_rate": lr}
    if name == "adam":
        return keras.optimizers.Adam, {"learning_rate": lr}
    if name == "adamw":
        return keras.optimizers.AdamW, {"learning_rate": lr, "weight_decay": float(values["weight_decay"])}
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
