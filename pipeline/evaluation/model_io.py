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
