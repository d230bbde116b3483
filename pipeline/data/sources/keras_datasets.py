"""``data.source: keras``: MNIST, Fashion-MNIST or CIFAR-10 through ``keras.datasets`` (downloads once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.data.sources.base import RawDataset
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.config import DataConfig

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
    """Train and test parts merged (``preprocess`` re-splits them stratified, with the project's seed)."""
    try:
        (x_train, y_train), (x_test, y_test) = _keras_loader(name)()
    except Exception as error:  # noqa: BLE001 - offline shows up as many exception types
        raise DataError(
            f"data.keras_dataset: cannot load {name!r} through keras.datasets ({type(error).__name__}: "
            f"{str(error)[:160]}); it downloads on first use, so this needs the network. Offline, use "
            "data.source: digits (built in) or data.source: images (your own folders)."
        ) from None
    # Straight into one float32 array: concatenating the uint8 parts first would add a copy.
    x = np.empty((len(x_train) + len(x_test), *x_train.shape[1:]), dtype=np.float32)
    x[:len(x_train)], x[len(x_train):] = x_train, x_test
    y = np.concatenate([np.ravel(y_train), np.ravel(y_test)]).astype(np.int64)
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return RawDataset(x=x, y=y, class_names=KERAS_CLASS_NAMES[name], pixel_max=255.0, dataset=name)


class KerasSource:
    name = "keras"

    def load(self, data: DataConfig) -> RawDataset:
        return load_keras(data.keras_dataset)
