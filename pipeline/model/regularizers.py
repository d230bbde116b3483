"""Kernel regularizers of section 2.1.2 (the loss penalty; AdamW's decoupled decay is an optimizer knob)."""

from __future__ import annotations

import keras

from pipeline.config import REGULARIZERS


def kernel_regularizer(name: str, strength: float) -> keras.regularizers.Regularizer | None:
    """``none`` -> None; ``l1``/``l2``/``l1_l2`` with ``strength`` (both terms for l1_l2)."""
    strength = float(strength)
    if name == "none":
        return None
    if name == "l1":
        return keras.regularizers.L1(strength)
    if name == "l2":
        return keras.regularizers.L2(strength)
    if name == "l1_l2":
        return keras.regularizers.L1L2(l1=strength, l2=strength)
    raise ValueError(f"unknown regularizer {name!r}; allowed: {', '.join(REGULARIZERS)}")
