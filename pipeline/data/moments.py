"""Per-channel mean and standard deviation of images, in float64 chunks, bit for bit as scikit-learn's.

The normalization statistics used to come from ``StandardScaler`` fitted on a float64 copy of
every training pixel (twice the training split again, on top of it). Here the pixels are
summed in small float64 chunks instead, and the chunks are combined in exactly the order in
which numpy sums one whole array, so the statistics keep every bit: the processed arrays and
their fingerprint stay the same, and DVC sees no change downstream of ``preprocess``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Pixels per float64 chunk: 0.75 MB for RGB, small next to any image set and big enough for speed.
CHUNK_PIXELS = 1 << 15
# numpy's pairwise summation splits a run at half its length, rounded down to this unroll width.
_UNROLL = 8

Terms = Callable[[np.ndarray], Sequence[np.ndarray]]


def channel_sums(pixels: np.ndarray, terms: Terms, chunk: int = CHUNK_PIXELS) -> list[np.ndarray]:
    """``[np.sum(t, axis=0) for t in terms(pixels.astype(np.float64))]``, without the float64 copy.

    ``pixels`` is (P, C); ``terms`` maps a float64 chunk of it to same-shaped arrays, element by
    element (the chunk is 1-D when C is 1). Each result is a float64 array of shape (C,).
    """
    if pixels.shape[1] == 1:
        # One channel is a contiguous column: numpy sums it pairwise, halving recursively.
        return [np.atleast_1d(s) for s in _pairwise(pixels[:, 0], terms, max(chunk, 128))]
    # Several channels: numpy adds row after row into one accumulator per channel.
    return _sequential(pixels, terms, chunk)


def _pairwise(column: np.ndarray, terms: Terms, leaf: int) -> list[np.float64]:
    if len(column) <= leaf:  # np.sum on this run recurses exactly as on the whole column
        return [np.sum(t) for t in terms(column.astype(np.float64))]
    half = len(column) // 2
    half -= half % _UNROLL
    left, right = _pairwise(column[:half], terms, leaf), _pairwise(column[half:], terms, leaf)
    return [a + b for a, b in zip(left, right, strict=True)]


def _sequential(pixels: np.ndarray, terms: Terms, chunk: int) -> list[np.ndarray]:
    sums: list[np.ndarray] | None = None
    for start in range(0, len(pixels), chunk):
        parts = terms(pixels[start:start + chunk].astype(np.float64))
        if sums is None:
            sums = [np.sum(part, axis=0) for part in parts]
        else:  # the running sum as the first row continues numpy's row-after-row order
            sums = [np.sum(np.concatenate([total[np.newaxis], part]), axis=0)
                    for total, part in zip(sums, parts, strict=True)]
    if sums is None:
        raise ValueError("no pixels to sum")
    return sums


def channel_mean_std(pixels: np.ndarray, chunk: int = CHUNK_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation per channel of (P, C) ``pixels``, as ``StandardScaler``.

    The same two-pass algorithm with its correction term (Chan, Golub and LeVeque) and the same
    rule for a constant channel (its scale is 1), in the same order of operations.
    """
    count = np.float64(len(pixels))
    (total,) = channel_sums(pixels, lambda part: (part,), chunk)
    mean = total / count

    def centered(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        deviation = part - mean
        return deviation, deviation**2

    correction, squares = channel_sums(pixels, centered, chunk)
    variance = (squares - correction**2 / count) / count
    # A channel indistinguishable from a constant one, by the error bound of the two-pass algorithm.
    eps = np.finfo(np.float64).eps
    constant = variance <= count * eps * variance + (count * mean * eps) ** 2
    std = np.sqrt(variance)
    std[constant] = 1.0
    return mean, std
