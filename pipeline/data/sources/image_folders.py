"""``data.source: images``: one sub-folder of images per class under ``data.images_dir``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.images import IMAGE_SUFFIXES, image_files, read_image
from pipeline.data.sources.base import RawDataset
from pipeline.errors import DataError

if TYPE_CHECKING:
    from pipeline.config import DataConfig


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"data.images_dir: {root} is not a folder; put one sub-folder of images per class there")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"data.images_dir: {root} has {len(class_dirs)} class folder(s); need at least 2 "
                        "(one sub-folder per class)")
    return class_dirs


def load_image_folders(root: str | Path, size: tuple[int, int], color_mode: str, on_bad_image: str) -> RawDataset:
    """``root/<class>/<image>``: one sub-folder per class, sorted by name."""
    class_dirs = _class_folders(Path(root))
    files: list[list[Path]] = []
    for class_dir in class_dirs:
        files.append(image_files(class_dir))
        if not files[-1]:
            raise DataError(f"data.images_dir: class folder {class_dir} holds no images "
                            f"({', '.join(IMAGE_SUFFIXES)})")
    # Decode straight into one preallocated array: a list of per-image arrays stacked at the end
    # held the data two to three times over (list, stack, dtype copy).
    channels = 1 if color_mode == "grayscale" else 3
    x = np.empty((sum(map(len, files)), *size, channels), dtype=np.float32)
    y = np.empty(len(x), dtype=np.int64)
    kept, bad = 0, []
    for index, class_files in enumerate(files):
        for path in class_files:
            try:
                x[kept] = read_image(path, size, color_mode)
            except Exception as error:  # noqa: BLE001 - PIL raises many types for a corrupt file
                bad.append((path, f"{type(error).__name__}: {error}"))
                continue
            y[kept] = index
            kept += 1
    if bad:
        listing = "; ".join(f"{path} ({reason[:80]})" for path, reason in bad)
        if on_bad_image == "error":
            raise DataError(f"data.images_dir: {len(bad)} unreadable image file(s): {listing}. "
                            "Fix or remove them, or set data.on_bad_image: skip")
        print(f"warning: skipped {len(bad)} unreadable image file(s): {listing}", file=sys.stderr)
    counts = np.bincount(y[:kept], minlength=len(class_dirs))
    for class_dir, count in zip(class_dirs, counts, strict=True):
        if count == 0:
            raise DataError(f"data.images_dir: class folder {class_dir} has no readable images")
    return RawDataset(x=x[:kept], y=y[:kept], class_names=[p.name for p in class_dirs], pixel_max=255.0,
                      dataset="images", skipped=[str(path) for path, _ in bad])


class ImageFolderSource:
    name = "images"

    def load(self, data: DataConfig) -> RawDataset:
        return load_image_folders(data.images_dir, tuple(data.image_size), data.color_mode, data.on_bad_image)
