"""Rearranging the rows of an array in place, so that splitting a dataset needs no second copy of it."""

from __future__ import annotations

import numpy as np


def gather_rows_in_place(x: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Move rows of ``x`` so that ``x[:len(order)]`` holds what ``x[order]`` would; returns that view.

    ``x[order]`` copies the selected rows. Following the cycles of the permutation instead moves
    each row once through one row of scratch space. Rows not in ``order`` end up after them, in
    their original order; ``order`` must not repeat an index.
    """
    order = np.asarray(order, dtype=np.intp)
    n = len(x)
    if len(order) and (order.min() < 0 or order.max() >= n):
        raise IndexError(f"row index out of range for {n} rows")
    if len(np.unique(order)) != len(order):
        raise ValueError("order repeats a row index; an in-place gather can place each row once")
    rest = np.setdiff1d(np.arange(n, dtype=np.intp), order, assume_unique=True)
    # After the loop, new x[i] is old x[source[i]]; Python ints keep the per-row loop fast.
    source = np.concatenate([order, rest]).tolist()
    done = bytearray(n)
    for start in range(n):
        if done[start] or source[start] == start:
            continue
        scratch = x[start].copy()
        i = start
        while True:
            done[i] = 1
            j = source[i]
            if j == start:
                x[i] = scratch
                break
            x[i] = x[j]
            i = j
    return x[:len(order)]
