"""Per-channel normalization fitted on the training split only (no leakage into val/test)."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.data.moments import channel_mean_std

# float64 values per chunk when normalizing in place: 2 MB, however large the images.
CHUNK_VALUES = 1 << 18


def fit_normalization(x_train: np.ndarray, method: str) -> dict[str, Any]:
    """Statistics of ``method`` over the training images, per channel, as JSON-ready lists.

    Bit for bit what scikit-learn's StandardScaler / MinMaxScaler give on a float64 copy of the
    pixels, without that copy (see ``pipeline.data.moments``).
    """
    pixels = x_train.reshape(-1, x_train.shape[-1])
    if method == "standardize":
        # A constant channel has std 0; its scale becomes 1, as StandardScaler does.
        mean, std = channel_mean_std(pixels)
        return {"method": method, "mean": mean.tolist(), "std": std.tolist()}
    if method == "minmax":
        # float32 extremes are exact in float64, so taking them before the cast changes nothing.
        low, high = pixels.min(axis=0).astype(np.float64), pixels.max(axis=0).astype(np.float64)
        span = high - low
        return {"method": method, "min": low.tolist(), "range": np.where(span > 0, span, 1.0).tolist()}
    if method == "none":
        return {"method": method}
    raise ValueError(f"unknown normalization {method!r}")


def normalize_in_place(x: np.ndarray, stats: dict[str, Any]) -> None:
    """``x[...] = apply_normalization(x, stats)`` on a float32 ``x``, a few rows at a time.

    The arithmetic is float64 as in ``apply_normalization`` (the same float32 results), but no
    float64 copy of the whole array is ever made.
    """
    method = stats["method"]
    if method == "none":
        return
    keys = ("mean", "std") if method == "standardize" else ("min", "range")
    shift, scale = (np.asarray(stats[key], dtype=np.float64) for key in keys)
    rows = max(1, CHUNK_VALUES // max(1, int(np.prod(x.shape[1:]))))
    for start in range(0, len(x), rows):
        part = x[start:start + rows].astype(np.float64)
        part -= shift
        part /= scale
        x[start:start + rows] = part


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


def raw_from_processed(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """The exact inverse of ``apply_normalization``: processed arrays back on the source's pixel scale.

    Evaluation feeds these to a self-contained model (normalization inside it), so the model is
    scored on images as a user has them, not on the arrays it was trained from.
    """
    method = stats["method"]
    values = np.asarray(x, dtype=np.float64)
    if method == "standardize":
        out = values * np.asarray(stats["std"]) + np.asarray(stats["mean"])
    elif method == "minmax":
        out = values * np.asarray(stats["range"]) + np.asarray(stats["min"])
    else:
        out = values
    return np.asarray(out, dtype=np.float32)
