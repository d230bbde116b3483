"""Reading image files with Pillow, for training (``sources.image_folders``) and prediction alike."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# Pillow modes whose samples are 16-bit: scaled by their range, never clipped to 8 bits.
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
# Modes with an alpha band: composited over black (what a transparent pixel shows when its colour
# is dropped), so a transparent background reads as dark, the same as in the opaque picture.
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")


def read_image(path: Path, size: tuple[int, int], color_mode: str) -> np.ndarray:
    """One image as float32 (H, W, C) in [0, 255], resized to ``size`` = (height, width).

    Every file is read by its real range: 16-bit greys are scaled (65535 -> 255), palette,
    grey+alpha, RGBA and CMYK files converted by Pillow, alpha composited over black.
    32-bit integer or float files have no agreed range and are refused.
    """
    from PIL import Image

    with Image.open(path) as image:
        image.seek(0)  # first frame of an animated GIF
        if image.mode in ("I", "F"):
            raise ValueError(f"{image.mode!r} (32-bit) images have no agreed pixel range; save as 8- or 16-bit")
        if image.mode in SIXTEEN_BIT_MODES:
            grey = Image.fromarray(np.asarray(image, dtype=np.float32) * np.float32(255.0 / 65535.0), mode="F")
            array = np.asarray(grey.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float32)
            array = np.clip(array, 0.0, 255.0)[..., np.newaxis]
            return array if color_mode == "grayscale" else np.repeat(array, 3, axis=-1)
        image = _flatten_alpha(image)
        image = image.convert("L" if color_mode == "grayscale" else "RGB")
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32)
    return array[..., np.newaxis] if array.ndim == 2 else array


def _flatten_alpha(image: Any) -> Any:
    """``image`` without its alpha band, composited over black; other images unchanged."""
    from PIL import Image

    has_alpha = image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info)
    if not has_alpha:
        return image
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba).convert("RGB")


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


# Decoding is spread over processes only from this many files: below it, starting them costs more
# than it saves (a spawned worker imports numpy and Pillow, about half a second).
PARALLEL_MIN_FILES = 4096
# Files per work item: a decoded chunk is at most 500 x 32x32x3 float32 = 6 MB in flight.
DECODE_CHUNK = 500


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _decode_chunk(job: tuple[list[str], tuple[int, int], str]) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """One work item: its files decoded into one array (a bad file's row left zero) and the bad ones."""
    paths, size, color_mode = job
    out = np.zeros((len(paths), *size, 1 if color_mode == "grayscale" else 3), dtype=np.float32)
    bad = []
    for row, path in enumerate(paths):
        try:
            out[row] = read_image(Path(path), size, color_mode)
        except Exception as error:  # noqa: BLE001 - PIL raises many types for a corrupt file
            bad.append((row, f"{type(error).__name__}: {error}"))
    return out, bad


def decode_into(files: Sequence[Path], size: tuple[int, int], color_mode: str, out: np.ndarray,
                workers: int | None = None) -> list[tuple[int, str]]:
    """Decode ``files[i]`` into ``out[i]`` (float32 NHWC, preallocated); returns (index, reason) of the bad files.

    Many files are decoded on every usable core (``workers`` overrides), in chunks of
    ``DECODE_CHUNK``, at most two chunks per worker in flight: the memory beyond ``out`` stays a
    few megabytes whatever the number of files. The workers are spawned, never forked, so a
    parent that has TensorFlow loaded is safe, and the result is the same bytes as one process.
    """
    workers = usable_cores() if workers is None else max(1, int(workers))
    jobs = [([str(p) for p in files[start:start + DECODE_CHUNK]], tuple(size), color_mode)
            for start in range(0, len(files), DECODE_CHUNK)]
    bad: list[tuple[int, str]] = []
    if workers == 1 or len(files) < PARALLEL_MIN_FILES:
        for number, job in enumerate(jobs):
            bad.extend(_place(out, number, *_decode_chunk(job)))
        return bad
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque[Any] = deque()
        for number, job in enumerate(jobs):
            pending.append((number, pool.submit(_decode_chunk, job)))
            if len(pending) >= 2 * workers:  # bounded: results never pile up in the parent
                done, future = pending.popleft()
                bad.extend(_place(out, done, *future.result()))
        while pending:
            done, future = pending.popleft()
            bad.extend(_place(out, done, *future.result()))
    return bad


def _place(out: np.ndarray, number: int, chunk: np.ndarray, bad: list[tuple[int, str]]) -> list[tuple[int, str]]:
    start = number * DECODE_CHUNK
    out[start:start + len(chunk)] = chunk
    return [(start + row, reason) for row, reason in bad]


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


def load_for_prediction(paths: Sequence[str | Path], meta: dict[str, Any],
                        unreadable: list[tuple[Path, str]] | None = None) -> tuple[np.ndarray, list[Path]]:
    """Image files preprocessed exactly like the training data described by ``meta``.

    An unreadable file raises, unless ``unreadable`` is given: then the (file, reason) pairs are
    put there and the readable files still come back (a folder with one bad image is not lost).
    """
    from pipeline.data.normalize import apply_normalization

    height, width, channels = meta["input_shape"]
    color_mode = "grayscale" if channels == 1 else "rgb"
    files = expand_paths(paths)
    arrays, kept, bad = _read_all(files, (height, width), color_mode)
    if bad and (unreadable is None or not kept):
        raise DataError("unreadable image file(s): " + "; ".join(f"{p} ({r[:80]})" for p, r in bad))
    if unreadable is not None:
        unreadable.extend(bad)
    x = np.stack(arrays) * (float(meta["pixel_max"]) / 255.0)  # files are 0..255; training data may not be
    return apply_normalization(x, meta["normalization"]), kept
