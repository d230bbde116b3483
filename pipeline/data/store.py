"""The on-disk format of ``data/processed/``: one ``.npy`` per array plus ``meta.json``.

Plain ``.npy`` files (not ``.npz``, whose zip entries carry timestamps) keep the
output byte-identical for the same parameters, so DVC sees no change on a rerun.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError

SPLITS = ("train", "validation", "test")


def save_split(directory: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _save_array(directory / f"x_{split}.npy", np.ascontiguousarray(x, dtype=np.float32))
    _save_array(directory / f"y_{split}.npy", np.ascontiguousarray(y, dtype=np.int32))


def _save_array(path: Path, array: np.ndarray) -> None:
    try:
        np.save(path, array, allow_pickle=False)
    except OSError as error:
        if error.errno is not None:
            raise
        # NumPy reports a short write ("N requested and M written") without an errno: the disk is full.
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({error})", str(path)) from None


# Splits whose images take more than this are memory-mapped by ``load_split`` (unless told): training
# streams them from the page cache (``pipeline.model.training``), which every process reading them
# shares (trial processes, ablation workers), instead of holding a private copy each. The batches
# are the same either way, so the choice changes memory and nothing else.
STREAM_ABOVE_BYTES = 256 * 2**20


def load_split(directory: str | Path, split: str, *, mmap: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one split: x float32 NHWC, normalized; y int32 class indices.

    ``mmap``: True leaves ``x`` a read-only memory map of its file (streamed, not loaded), False
    loads it; None (the default) maps it when it is larger than ``STREAM_ABOVE_BYTES``.
    """
    directory = Path(directory)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    x_path, y_path = directory / f"x_{split}.npy", directory / f"y_{split}.npy"
    if not x_path.is_file() or not y_path.is_file():
        raise DataError(f"{x_path}: not found; run `python -m pipeline preprocess` (or `dvc repro`) first")
    # mmap: the counts are checked before the images are read (a split can be gigabytes)
    x, y = np.load(x_path, allow_pickle=False, mmap_mode="r"), np.load(y_path, allow_pickle=False, mmap_mode="r")
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{x_path}: {len(x) if x.ndim else 0} images but {y_path.name} has "
                        f"{len(y) if y.ndim == 1 else 'shape ' + str(y.shape)} labels; allowed: one label per image "
                        "(rerun `python -m pipeline preprocess`)")
    if mmap is None:
        mmap = x.nbytes > STREAM_ABOVE_BYTES
    labels = np.load(y_path, allow_pickle=False)  # small: always in memory
    return (x if mmap else np.load(x_path, allow_pickle=False)), labels


def save_meta(directory: Path, meta: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_meta(directory: str | Path) -> dict[str, Any]:
    """The processed data's description, see ``pipeline.stages.preprocess`` for its keys."""
    path = Path(directory) / "meta.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `python -m pipeline preprocess` (or `dvc repro`) first")
    return json.loads(path.read_text(encoding="utf-8"))
