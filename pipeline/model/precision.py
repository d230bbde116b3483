"""Which numeric precision the CNNs train in: ``precision`` in params.yaml, resolved on the machine.

``auto`` trains in mixed precision (``mixed_float16``: float16 compute, float32 weights, Keras'
loss scaling) where every visible GPU has tensor cores (NVIDIA compute capability 7.0 or more:
Volta, Turing, Ampere, Hopper), and in float32 elsewhere: on a CPU float16 is slower, not faster,
and older GPUs gain nothing. ``float32``, ``mixed_float16`` and ``mixed_bfloat16`` are taken as
given (a CPU with bfloat16 units may gain from ``mixed_bfloat16``; measure before choosing).

Only model building reads it (``build_network``): the layers get the policy as they are made, and
the softmax stays float32 so that the loss and the saved model's outputs are float32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import get_args

from pipeline.config import Precision

SETTINGS: tuple[str, ...] = get_args(Precision)  # params.yaml's allowed values
POLICIES = tuple(s for s in SETTINGS if s != "auto")
# NVIDIA's first generation with tensor cores (Volta); the one mixed_float16 is fast on
TENSOR_CORES_FROM = (7, 0)


def policy_for_devices(compute_capabilities: Sequence[tuple[int, int] | None]) -> str:
    """``auto``'s choice for the visible GPUs' compute capabilities (none: a CPU-only machine)."""
    if compute_capabilities and all(cc is not None and tuple(cc) >= TENSOR_CORES_FROM for cc in compute_capabilities):
        return "mixed_float16"
    return "float32"


@functools.cache
def _visible_gpu_capabilities() -> tuple[tuple[int, int] | None, ...]:
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        found.append(tuple(capability) if capability else None)
    return tuple(found)


def resolve_precision(setting: str) -> str:
    """The Keras dtype policy name for ``setting`` (one of ``SETTINGS``) on this machine."""
    if setting not in SETTINGS:
        raise ValueError(f"precision {setting!r}; allowed: {', '.join(SETTINGS)}")
    if setting != "auto":
        return setting
    return policy_for_devices(_visible_gpu_capabilities())


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Layers made inside take ``policy`` (Keras reads the global policy when a layer is created)."""
    import keras

    if policy not in POLICIES:
        raise ValueError(f"dtype policy {policy!r}; allowed: {', '.join(POLICIES)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
