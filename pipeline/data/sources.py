"""Data sources chosen by ``data.source``: scikit-learn digits, Keras datasets, image folders.

Every source returns a ``RawDataset``: float32 images (N, H, W, C) on their raw pixel
scale, integer labels and class names. Splitting and normalization happen later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import DataError


@dataclass
class RawDataset:
    x: np.ndarray  # float32 (N, H, W, C), raw pixel scale [0, pixel_max]
    y: np.ndarray  # int (N,), indices into class_names
    class_names: list[str]
    pixel_max: float  # 16 for the 8x8 digits, 255 for image files and Keras datasets
    skipped: list[str] = field(default_factory=list)  # bad image files left out (on_bad_image: skip)


def load_digits() -> RawDataset:
    """scikit-learn's 8x8 digits: 1,797 grayscale images with values 0..16, 10 classes."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    return RawDataset(x=x, y=bunch.target.astype(np.int64), class_names=[str(c) for c in bunch.target_names],
                      pixel_max=16.0)


KERAS_CLASS_NAMES: dict[str, list[str]] = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle-boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}


def _keras_loader(name: str) -> Any:
    """The ``load_data`` function of ``keras.datasets.<name>`` (patched in tests: no network)."""
    import importlib

    return importlib.import_module(f"keras.datasets.{name}").load_data


def load_keras(name: str) -> RawDataset:
    """MNIST, Fashion-MNIST or CIFAR-10; train and test parts are merged and re-split later."""
    try:
        (x_train, y_train), (x_test, y_test) = _keras_loader(name)()
    except Exception as error:  # noqa: BLE001 - offline shows up as many exception types
        raise DataError(
            f"data.keras_dataset: cannot load {name!r} through keras.datasets ({type(error).__name__}: "
            f"{str(error)[:160]}); it downloads on first use, so this needs the network. Offline, use "
            "data.source: digits (built in) or data.source: images (your own folders)."
        ) from None
    x = np.concatenate([x_train, x_test]).astype(np.float32)
    y = np.concatenate([np.ravel(y_train), np.ravel(y_test)]).astype(np.int64)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return RawDataset(x=x, y=y, class_names=KERAS_CLASS_NAMES[name], pixel_max=255.0)
