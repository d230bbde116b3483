"""``data.source: images``: one sub-folder of images per class under ``data.images_dir``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.data.images import IMAGE_SUFFIXES, decode_into, image_files
from pipeline.data.reorder import gather_rows_in_place
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
    # Decode straight into one preallocated array (on every core for a big folder): a list of
    # per-image arrays stacked at the end held the data two to three times over.
    channels = 1 if color_mode == "grayscale" else 3
    flat = [path for class_files in files for path in class_files]
    x = np.empty((len(flat), *size, channels), dtype=np.float32)
    labels = np.repeat(np.arange(len(files), dtype=np.int64), [len(class_files) for class_files in files])
    failed = decode_into(flat, size, color_mode, x)
    bad = [(flat[index], reason) for index, reason in failed]
    keep = np.ones(len(flat), dtype=bool)
    keep[[index for index, _ in failed]] = False
    kept = int(keep.sum())
    if failed:  # close the gaps left by bad files, in place (rows only move down)
        x = gather_rows_in_place(x, np.flatnonzero(keep))
    y = labels[keep]
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
