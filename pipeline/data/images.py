"""Image files: class folders for training and single files for prediction, read with Pillow."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.sources import RawDataset
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


def _image_files(folder: Path) -> list[Path]:
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


def load_image_folders(root: str | Path, size: tuple[int, int], color_mode: str, on_bad_image: str) -> RawDataset:
    """``root/<class>/<image>``: one sub-folder per class, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data.images_dir: {root} is not a folder; put one sub-folder of images per class there")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"data.images_dir: {root} has {len(class_dirs)} class folder(s); need at least 2 "
                        "(one sub-folder per class)")
    xs, ys, bad_all = [], [], []
    for index, class_dir in enumerate(class_dirs):
        files = _image_files(class_dir)
        if not files:
            raise DataError(f"data.images_dir: class folder {class_dir} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
        arrays, _, bad = _read_all(files, size, color_mode)
        bad_all.extend(bad)
        xs.extend(arrays)
        ys.extend([index] * len(arrays))
    if bad_all:
        listing = "; ".join(f"{path} ({reason[:80]})" for path, reason in bad_all)
        if on_bad_image == "error":
            raise DataError(f"data.images_dir: {len(bad_all)} unreadable image file(s): {listing}. "
                            "Fix or remove them, or set data.on_bad_image: skip")
        print(f"warning: skipped {len(bad_all)} unreadable image file(s): {listing}", file=sys.stderr)
    counts = np.bincount(np.asarray(ys, dtype=np.int64), minlength=len(class_dirs))
    for class_dir, count in zip(class_dirs, counts, strict=True):
        if count == 0:
            raise DataError(f"data.images_dir: class folder {class_dir} has no readable images")
    return RawDataset(x=np.stack(xs).astype(np.float32), y=np.asarray(ys, dtype=np.int64),
                      class_names=[p.name for p in class_dirs], pixel_max=255.0,
                      skipped=[str(path) for path, _ in bad_all])


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
