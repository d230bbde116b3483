"""``data.source: digits``: scikit-learn's 8x8 digits, built in and offline (the default)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.sources.base import RawDataset

if TYPE_CHECKING:
    from pipeline.config import DataConfig


def load_digits() -> RawDataset:
    """1,797 grayscale images with values 0..16, 10 classes."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    return RawDataset(x=x, y=bunch.target.astype(np.int64), class_names=[str(c) for c in bunch.target_names],
                      pixel_max=16.0, dataset="digits")


class DigitsSource:
    name = "digits"

    def load(self, data: DataConfig) -> RawDataset:
        return load_digits()
