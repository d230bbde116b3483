"""MNIST- and CIFAR-sized image folders for benchmarks: 60,000 grey 28x28 and 50,000 RGB 32x32 images.

Drawn like the rest of the task suite (``bench/tasks.py``): offline, one generator per image
seeded by ``(seed, task, index)``, so the first ``n`` images of any run are the same bytes
whatever the count or the number of processes, and written as ``DIR/<task>/<class>/<index>.png``
for ``data.source: images``. Worker processes each draw and write a range of indices; nothing
holds the whole task in memory.

    big_grey  scikit-learn's 1,797 digits, each ~33 times: upscaled to 16-22 px, rotated +-15
              degrees, shifted +-3 px around the centre of 28x28, contrast and noise varied
              (variants of one digit can land in train and test: a benchmark, not a held-out test)
    big_rgb   the suite's cifar_like objects (shape x solid/striped on clutter), 32x32 RGB, 6 classes

    python bench/big_folders.py --out /tmp/big --tasks big_grey          # ~1 min on 2 cores
    python bench/big_folders.py --out /tmp/big --tasks big_grey --count 500
    python bench/tasks.py --out /tmp/big --tasks big_grey,big_rgb        # the same, via the suite's CLI
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tasks  # noqa: E402

from pipeline.atomic import replace_dir_atomic  # noqa: E402

CHUNK = 500  # images per work item: small enough to spread over the cores, big enough to amortize a task


def _big_digit(rng: np.random.Generator, index: int) -> tuple[np.ndarray, int]:
    """Digit ``index % 1797`` upscaled to 16-22 px, rotated +-15 degrees, near the centre of 28x28, noise."""
    from PIL import Image

    images, targets = tasks._sklearn_digits()
    digit = Image.fromarray(images[index % len(images)] * (255.0 / 16.0), mode="F")
    side = int(rng.integers(16, 23))
    digit = digit.resize((side, side), Image.Resampling.BILINEAR)
    digit = digit.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR, expand=True)
    glyph = np.clip(np.asarray(digit, dtype=np.float32), 0, 255)[:28, :28]
    h, w = glyph.shape
    top = int(np.clip((28 - h) // 2 + rng.integers(-3, 4), 0, 28 - h))
    left = int(np.clip((28 - w) // 2 + rng.integers(-3, 4), 0, 28 - w))
    canvas = np.zeros((28, 28), dtype=np.float32)
    canvas[top:top + h, left:left + w] = glyph
    image = rng.uniform(0, 30) + canvas * rng.uniform(0.7, 1.0) + rng.normal(0, 12, canvas.shape)
    return tasks._to_uint8(image)[..., None], int(targets[index % len(targets)])


BIG_TASKS: dict[str, tasks.Task] = {
    "big_grey": tasks.Task("big_grey", "MNIST-sized: scikit-learn's digits upscaled, rotated, shifted and noised, "
                           "60,000 images 28x28 grey, 10 classes (benchmarks only)", (28, 28), "grayscale", 10,
                           60_000, 500),
    "big_rgb": tasks.Task("big_rgb", "CIFAR-sized: the suite's cifar_like objects, 50,000 images 32x32 RGB, "
                          "6 classes (benchmarks only)", (32, 32), "rgb", 6, 50_000, 500),
}
BIG_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "big_grey": tuple(str(d) for d in range(10)),
    "big_rgb": tasks.OBJECTS,
}
_BIG_GENERATORS: dict[str, Callable[[np.random.Generator, int], tuple[np.ndarray, int]]] = {
    "big_grey": _big_digit,
    "big_rgb": tasks._by_label(tasks._cifar_like, 6),
}


def _big_task(name: str) -> tasks.Task:
    if name not in BIG_TASKS:
        raise ValueError(f"unknown big task {name!r}; known: {', '.join(BIG_TASKS)}")
    return BIG_TASKS[name]


def draw(name: str, index: int, seed: int = 0) -> tuple[np.ndarray, int]:
    """Image ``index`` of big task ``name`` (uint8 HWC) and its label: a pure function of its arguments."""
    _big_task(name)
    return _BIG_GENERATORS[name](tasks._rng(name, seed, index), index)


def make_big_arrays(name: str, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` images and labels in memory (for tests and small looks, not the full task)."""
    task = _big_task(name)
    x = np.empty((count, *task.image_size, 1 if task.color_mode == "grayscale" else 3), dtype=np.uint8)
    y = np.empty(count, dtype=np.int64)
    for index in range(count):
        x[index], y[index] = draw(name, index, seed)
    return x, y


def _write_range(job: tuple[str, int, int, int, str]) -> int:
    """Draw and save images ``start .. stop - 1`` of ``name`` under ``folder``; returns how many."""
    from PIL import Image

    name, seed, start, stop, folder = job
    names = BIG_CLASS_NAMES[name]
    for index in range(start, stop):
        image, label = draw(name, index, seed)
        pixels = image[..., 0] if image.shape[-1] == 1 else image
        Image.fromarray(pixels, mode="L" if image.shape[-1] == 1 else "RGB").save(
            Path(folder) / names[label] / f"{index:05d}.png", optimize=False)
    return stop - start


def write_big_task(name: str, out: Path, *, count: int | None = None, seed: int = 0,
                   workers: int | None = None, chunk: int = CHUNK) -> Path:
    """Write the first ``count`` (default: all) images of big task ``name`` as ``out/<name>/<class>/<index>.png``.

    ``workers`` processes (default: every core this process may use) draw and write ranges of
    ``chunk`` indices each; the folder is built beside and swapped in, so an interrupted run
    never leaves a half task that looks whole.
    """
    task = _big_task(name)
    count = task.images if count is None else int(count)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    workers = max(1, workers or len(os.sched_getaffinity(0)))
    folder = Path(out) / name
    with replace_dir_atomic(folder) as tmp:
        for label in BIG_CLASS_NAMES[name]:
            (tmp / label).mkdir()
        jobs = [(name, seed, start, min(start + chunk, count), str(tmp)) for start in range(0, count, chunk)]
        if workers == 1 or len(jobs) == 1:
            written = sum(map(_write_range, jobs))
        else:
            tasks._sklearn_digits()  # loaded once here, inherited by the forked workers
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                written = sum(pool.imap_unordered(_write_range, jobs))
        if written != count:
            raise RuntimeError(f"{name}: wrote {written} images, expected {count}")
    return folder


def data_params(name: str, folder: Path) -> dict[str, Any]:
    """The ``data:`` overrides of params.yaml that make the pipeline read big task ``name`` from ``folder``."""
    task = _big_task(name)
    return {"source": "images", "images_dir": str(folder), "image_size": list(task.image_size),
            "color_mode": task.color_mode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder that receives one sub-folder per task")
    parser.add_argument("--tasks", default=",".join(BIG_TASKS), help=f"comma-separated subset of: "
                        f"{', '.join(BIG_TASKS)}")
    parser.add_argument("--count", type=int, default=None, help="only the first COUNT images (default: all)")
    parser.add_argument("--quick", action="store_true", help="the first Task.quick_images images")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every usable core)")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"images per work item (default {CHUNK})")
    args = parser.parse_args(argv)
    chosen = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in BIG_TASKS]
    if unknown or not chosen:
        print(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(BIG_TASKS)}",
              file=sys.stderr)
        return 2
    for flag, value in (("--count", args.count), ("--workers", args.workers), ("--chunk", args.chunk)):
        if value is not None and value < 1:
            print(f"{flag}: {value}; allowed: a positive number", file=sys.stderr)
            return 2
    for name in chosen:
        task = BIG_TASKS[name]
        count = args.count or (task.quick_images if args.quick else task.images)
        start = time.perf_counter()
        folder = write_big_task(name, args.out, count=count, workers=args.workers, chunk=args.chunk)
        print(tasks.written(name, task, count, folder, start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
