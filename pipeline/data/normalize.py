"""Per-channel normalization fitted on the training split only (no leakage into val/test)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler


def fit_normalization(x_train: np.ndarray, method: str) -> dict[str, Any]:
    """Statistics of ``method`` over the training images, per channel, as JSON-ready lists."""
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64)
    if method == "standardize":
        scaler = StandardScaler().fit(pixels)
        # A constant channel has std 0; StandardScaler already maps its scale to 1.
        return {"method": method, "mean": scaler.mean_.tolist(), "std": scaler.scale_.tolist()}
    if method == "minmax":
        scaler = MinMaxScaler().fit(pixels)
        span = np.where(scaler.data_range_ > 0, scaler.data_range_, 1.0)
        return {"method": method, "min": scaler.data_min_.tolist(), "range": span.tolist()}
    if method == "none":
        return {"method": method}
    raise ValueError(f"unknown normalization {method!r}")


def apply_normalization(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Apply statistics from ``fit_normalization`` (also used on images at prediction time)."""
    method = stats["method"]
    if method == "standardize":
        out = (x - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    elif method == "minmax":
        out = (x - np.asarray(stats["min"])) / np.asarray(stats["range"])
    else:
        out = x
    return np.asarray(out, dtype=np.float32)
