"""A content fingerprint of the processed data: same arrays -> same hash, on any machine."""

from __future__ import annotations

import hashlib

import numpy as np


def fingerprint(arrays: dict[str, np.ndarray], extra: str = "") -> str:
    """SHA-256 over names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array)  # the buffer itself: tobytes() would copy every array once more
    digest.update(extra.encode())
    return digest.hexdigest()
