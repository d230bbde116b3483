"""Loading ``models/model.keras`` with the project's custom Keras objects registered."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def register_custom_objects() -> None:
    """Import the model package so its ``register_keras_serializable`` classes are known."""
    try:
        importlib.import_module("pipeline.model.hypermodel")
    except ImportError:
        pass


def check_keras_file(path: Path) -> None:
    """Refuse, before TensorFlow loads, a path that is not a ``.keras`` archive.

    Keras says "File not found" for any file it cannot open as a zip, which misleads when the
    file is right there.
    """
    if path.is_dir():
        raise PipelineError(f"{path}: is a folder, not a Keras model file; allowed: a .keras file saved by "
                            "`python -m pipeline train` (model.save)")
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline train` (or `dvc repro`) first")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        names = None
    if names is None or "config.json" not in names:
        raise PipelineError(f"{path}: not a Keras model file (a .keras file is a zip archive with config.json); "
                            "allowed: a .keras file saved by `python -m pipeline train` (model.save)")


def load_model_file(path: Path) -> Any:
    check_keras_file(path)
    import keras

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


def file_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes: which ``model.keras`` evaluate scored, checked again by register."""
    import hashlib

    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline train` (or `dvc repro`) first")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
