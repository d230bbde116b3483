"""Loading ``models/model.keras`` with the project's custom Keras objects registered."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def register_custom_objects() -> None:
    """Import the model package so its ``register_keras_serializable`` classes are known."""
    try:
        importlib.import_module("pipeline.model.hypermodel")
    except ImportError:
        pass


def load_model_file(path: Path) -> Any:
    import keras

    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline train` (or `dvc repro`) first")
    register_custom_objects()
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # noqa: BLE001 - a broken file shows up as many exception types
        raise PipelineError(f"{path}: cannot load the Keras model ({type(error).__name__}: {error})") from None


def model_fingerprint(model: Any) -> str:
    """SHA-256 of a model's architecture and weights (not of the file: ``.keras`` zips carry save times).

    A model retrained to the same weights gets the same fingerprint, so register can reuse its version.
    """
    import hashlib
    import json

    import numpy as np

    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for weight in model.weights:
        array = np.ascontiguousarray(np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight))
        digest.update(f"{weight.path}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
