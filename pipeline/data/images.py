"""Reading image files with Pillow, for training (``sources.image_folders``) and prediction alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_image(path: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    """One image as float32 (H, W, C) in [0, 255], resized to ``size`` = (height, width)."""
    from PIL import Image

    with Image.open(path) as image:
        image.seek(0)  # first frame of an animated GIF
        image = image.convert("L" if color_mode == "grayscale" else "RGB")
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
    return array[..., np.newaxis] if array.ndim == 2 else array


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_all(files: Iterable[Path], size: tuple[int, int], color_mode: str) -> tuple[list[np.ndarray], list[Path],
                                                                                         list[tuple[Path, str]]]:
    arrays, kept, bad = [], [], []
    for path in files:
        try:
            arrays.append(read_image(path, size, color_mode))
            kept.append(path)
        except Exception as error:  # noqa: BLE001 - PIL raises many types for a corrupt file
            bad.append((path, f"{type(error).__name__}: {error}"))
    return arrays, kept, bad


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, plus the images inside named folders (recursively)."""
    files: list[Path] = []
    for given in map(Path, paths):
        if given.is_dir():
            files.extend(sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif given.is_file():
            files.append(given)
        else:
            raise DataError(f"{given}: no such file or folder")
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, paths))}")
    return files


def load_for_prediction(paths: Sequence[str | Path], meta: dict[str, Any]) -> tuple[np.ndarray, list[Path]]:
    """Image files preprocessed exactly like the training data described by ``meta``."""
    from pipeline.data.normalize import apply_normalization

    height, width, channels = meta["input_shape"]
    color_mode = "grayscale" if channels == 1 else "rgb"
    files = expand_paths(paths)
    arrays, kept, bad = _read_all(files, (height, width), color_mode)
    if bad:
        raise DataError("unreadable image file(s): " + "; ".join(f"{p} ({r[:80]})" for p, r in bad))
    x = np.stack(arrays) * (float(meta["pixel_max"]) / 255.0)  # files are 0..255; training data may not be
    return apply_normalization(x, meta["normalization"]), kept
