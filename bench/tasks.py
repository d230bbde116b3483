"""The task suite: image classification tasks that differ in what wins, generated offline as image folders.

Every task but ``digits`` is drawn deterministically from numpy's RNG (one generator per image,
seeded by ``(seed, task, index)``, so a ``--quick`` task is the first images of the full one)
and written as ``DIR/<task>/<class>/<index>.png``, which ``data.source: images`` reads
unchanged (``data_params`` gives the ``data:`` overrides). ``digits`` is the built-in
8x8 data (``data.source: digits``), never written as a folder. Each ``Task.description``
says what is in the task and what should matter there; ``bench/task_reference.py``
measures which configuration actually wins.

    python bench/tasks.py --out DIR                  # every generated task, full size
    python bench/tasks.py --out DIR --quick          # small versions (seconds)
    python bench/tasks.py --out DIR --tasks shapes,counting
    python bench/tasks.py --out /tmp/big --tasks big_grey   # 60,000 images: bench/big_folders.py
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import replace_dir_atomic

DIGITS = "digits"
SUPERSAMPLE = 4  # shapes are drawn this many times larger, then box-filtered down: anti-aliased edges


@dataclass(frozen=True)
class Task:
    name: str
    description: str  # one line: what is in it and what should win
    image_size: tuple[int, int]  # (height, width)
    color_mode: str  # "grayscale" | "rgb"
    classes: int
    images: int  # full size
    quick_images: int  # --quick size


# ------------------------------------------------------------------------------------------ drawing
def _rng(name: str, seed: int, index: int) -> np.random.Generator:
    """The generator of one image: independent of how many images came before (quick = prefix of full)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(index)])


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a square, triangle or cross of 'radius' ``r`` around (cx, cy), rotated by ``angle`` radians."""
    if kind == "square":
        points = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        scale = r / np.sqrt(2) * 1.15
    elif kind == "triangle":
        points = [(np.cos(a), np.sin(a)) for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6)]
        scale = r
    elif kind == "cross":
        w = 0.33
        points = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w),
                  (-w, -w)]
        scale = r
    else:
        raise ValueError(f"unknown polygon {kind!r}")
    c, s = np.cos(angle), np.sin(angle)
    return [(cx + scale * (x * c - y * s), cy + scale * (x * s + y * c)) for x, y in points]


def shape_mask(kind: str, size: tuple[int, int], cx: float, cy: float, r: float, angle: float = 0.0,
               outline: float | None = None) -> np.ndarray:
    """A float mask in [0, 1] of ``kind`` (circle/square/triangle/cross), filled or an outline ``outline`` px wide."""
    from PIL import Image, ImageDraw

    k = SUPERSAMPLE
    canvas = Image.new("L", (size[1] * k, size[0] * k), 0)
    draw = ImageDraw.Draw(canvas)
    width = None if outline is None else max(1, int(round(outline * k)))
    if kind == "circle":
        box = [(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k]
        if width is None:
            draw.ellipse(box, fill=255)
        else:
            draw.ellipse(box, outline=255, width=width)
    else:
        points = [(x * k, y * k) for x, y in _polygon(kind, cx, cy, r, angle)]
        if width is None:
            draw.polygon(points, fill=255)
        else:
            draw.line([*points, points[0], points[1]], fill=255, width=width, joint="curve")
    small = canvas.resize((size[1], size[0]), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One colour from hue (degrees), saturation and value in [0, 1], as RGB in [0, 255]."""
    import colorsys

    return np.array(colorsys.hsv_to_rgb((h % 360) / 360.0, s, v), dtype=np.float32) * 255.0


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float32)
    return yy + 0.5, xx + 0.5


# -------------------------------------------------------------------------------------- the tasks
SHAPES = ("circle", "cross", "square", "triangle")  # sorted: the folder order is the label order


def _shapes(rng: np.random.Generator, label: int) -> np.ndarray:
    """A filled or outlined shape at a random place, size and rotation, two distractor dots, noise."""
    size = (32, 32)
    r = rng.uniform(3.5, 8.0)
    cx, cy = rng.uniform(r + 1, size[1] - r - 1), rng.uniform(r + 1, size[0] - r - 1)
    outline = None if rng.random() < 0.5 else rng.uniform(1.0, 1.8)
    mask = shape_mask(SHAPES[label], size, cx, cy, r, rng.uniform(0, 2 * np.pi), outline)
    background = rng.uniform(0, 100)
    contrast = rng.uniform(60, 150)
    image = background + contrast * mask
    for _ in range(3):
        dot = shape_mask("circle", size, rng.uniform(2, 30), rng.uniform(2, 30), rng.uniform(0.8, 1.8))
        image = image + contrast * 0.8 * dot
    image = image + rng.normal(0, 28, size)
    return _to_uint8(image)[..., None]


ORIENTATIONS = (60, 90, 120)  # degrees; a horizontal flip swaps 60 and 120
WARM, COOL = (0.0, 60.0), (180.0, 260.0)  # hue ranges (degrees)


def _gratings(rng: np.random.Generator, label: int) -> np.ndarray:
    """A coloured sinusoidal grating in a soft disk on coloured noise; class = hue family x orientation."""
    size = (24, 24)
    hues, orientation = (COOL, WARM)[label // 3], ORIENTATIONS[label % 3]
    yy, xx = _grid(size)
    theta = np.deg2rad(orientation + rng.normal(0, 10))
    period, phase = rng.uniform(4.0, 7.0), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (xx * np.cos(theta) - yy * np.sin(theta)) / period + phase)
    r = rng.uniform(4.0, 7.0)
    cx, cy = rng.uniform(r - 1, size[1] - r + 1), rng.uniform(r - 1, size[0] - r + 1)
    disk = np.clip(r - np.hypot(xx - cx, yy - cy), 0, 1.5) / 1.5
    colour = _hsv(rng.uniform(*hues), rng.uniform(0.3, 0.8), rng.uniform(0.45, 0.75))
    background = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.5), rng.uniform(0.3, 0.6))
    grating = colour * (1 + rng.uniform(0.2, 0.45) * wave[..., None])
    image = background * (1 - disk[..., None]) + grating * disk[..., None]
    image = image + rng.normal(0, 40, (*size, 3))
    return _to_uint8(image)


_SKLEARN_DIGITS: list[Any] = []


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    if not _SKLEARN_DIGITS:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        _SKLEARN_DIGITS.extend([bunch.images.astype(np.float32), bunch.target.astype(np.int64)])
    return _SKLEARN_DIGITS[0], _SKLEARN_DIGITS[1]


def _shifted_digit(rng: np.random.Generator, index: int) -> tuple[np.ndarray, int]:
    """scikit-learn's digit ``index`` upscaled to 12-18 px, rotated +-20 degrees, placed anywhere in 28x28, noise."""
    from PIL import Image

    images, targets = _sklearn_digits()
    digit = Image.fromarray(images[index % len(images)] * (255.0 / 16.0), mode="F")
    side = int(rng.integers(12, 19))
    digit = digit.resize((side, side), Image.Resampling.BILINEAR)
    digit = digit.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR, expand=True)
    glyph = np.clip(np.asarray(digit, dtype=np.float32), 0, 255)
    canvas = np.zeros((28, 28), dtype=np.float32)
    h, w = glyph.shape
    top, left = int(rng.integers(0, 28 - h + 1)), int(rng.integers(0, 28 - w + 1))
    canvas[top:top + h, left:left + w] = glyph
    image = rng.uniform(0, 40) + canvas * rng.uniform(0.6, 1.0) + rng.normal(0, 25, canvas.shape)
    return _to_uint8(image)[..., None], int(targets[index % len(targets)])


def _class_templates(classes: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Fixed smooth random patterns, one per class (the same for every image and seed of the task)."""
    rng = np.random.default_rng([int(seed), zlib.crc32(b"templates")])
    yy, xx = _grid(size)
    templates = np.zeros((classes, *size), dtype=np.float32)
    for c in range(classes):
        for _ in range(4):  # a few blobs of either sign
            cx, cy, s = rng.uniform(3, size[1] - 3), rng.uniform(3, size[0] - 3), rng.uniform(1.5, 3.0)
            templates[c] += rng.choice([-1.0, 1.0]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        templates[c] /= np.abs(templates[c]).max()
    return templates


NOISY_TEMPLATES = _class_templates(4, (16, 16), 0)


def _tiny_noisy(rng: np.random.Generator, label: int) -> np.ndarray:
    """A faint class pattern, shifted by up to 2 px and scaled, under strong pixel noise."""
    pattern = np.roll(NOISY_TEMPLATES[label], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
    image = 128 + rng.uniform(35, 60) * pattern + rng.normal(0, 40, pattern.shape)
    return _to_uint8(image)[..., None]


def _counting(rng: np.random.Generator, label: int) -> np.ndarray:
    """``label + 1`` bright blobs (never touching, away from the border) and a dim bar, on a noisy background."""
    size = (32, 32)
    yy, xx = _grid(size)
    centres: list[tuple[float, float]] = []
    while len(centres) < label + 1:  # rejection sampling: few tries, the canvas is far from full
        c = (rng.uniform(5, 27), rng.uniform(5, 27))
        if all(np.hypot(c[0] - a, c[1] - b) >= 7.0 for a, b in centres):
            centres.append(c)
    image = np.full(size, rng.uniform(10, 60), dtype=np.float32)
    for cx, cy in centres:
        s = rng.uniform(1.2, 2.0)
        image += rng.uniform(110, 190) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    bar = shape_mask("square", size, rng.uniform(4, 28), rng.uniform(4, 28), 2.0) if rng.random() < 0.5 else 0.0
    image = image + 50 * bar + rng.normal(0, 15, size)
    return _to_uint8(image)[..., None]


OBJECTS = ("circle_solid", "circle_striped", "square_solid", "square_striped", "triangle_solid", "triangle_striped")


def _cifar_like(rng: np.random.Generator, label: int) -> np.ndarray:
    """An object whose shape and texture (solid or striped) is the class, in a random colour, on clutter."""
    size = (32, 32)
    yy, xx = _grid(size)
    kind, texture = OBJECTS[label].split("_")
    image = np.broadcast_to(_hsv(rng.uniform(0, 360), rng.uniform(0, 0.5), rng.uniform(0.2, 0.7)),
                            (*size, 3)).copy()
    for _ in range(int(rng.integers(2, 5))):  # clutter: soft-coloured bars (never one of the objects)
        bar = shape_mask("square", size, rng.uniform(0, 32), rng.uniform(0, 32), rng.uniform(1.0, 2.0))
        bar = np.maximum(bar, shape_mask("square", size, rng.uniform(0, 32), rng.uniform(0, 32), 1.0))
        colour = _hsv(rng.uniform(0, 360), rng.uniform(0.3, 0.9), rng.uniform(0.3, 1.0))
        image = image * (1 - bar[..., None]) + colour * bar[..., None]
    r = rng.uniform(6.0, 10.0)
    cx, cy = rng.uniform(r, size[1] - r), rng.uniform(r, size[0] - r)
    mask = shape_mask(kind, size, cx, cy, r, rng.uniform(0, 2 * np.pi))
    hue = rng.uniform(0, 360)
    colour = _hsv(hue, rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0))
    if texture == "striped":
        theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 4.5)
        stripes = (np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period) > 0).astype(np.float32)
        other = _hsv(hue + 180, rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.6))
        fill = colour * stripes[..., None] + other * (1 - stripes[..., None])
    else:
        fill = np.broadcast_to(colour, (*size, 3))
    image = image * (1 - mask[..., None]) + fill * mask[..., None]
    image = image + rng.normal(0, 12, (*size, 3))
    return _to_uint8(image)


# name -> (task, class names in label order (sorted, as the folder source orders them), per-image generator)
Generator = Callable[[np.random.Generator, int], tuple[np.ndarray, int]]


def _by_label(draw: Callable[[np.random.Generator, int], np.ndarray], classes: int) -> Generator:
    """Image ``index`` of a balanced task: class ``index % classes``."""
    return lambda rng, index: (draw(rng, index % classes), index % classes)


TASKS: dict[str, Task] = {
    DIGITS: Task(DIGITS, "built-in 8x8 grey handwritten digits (data.source: digits), centred and clean: the "
                 "shipped recipe's home ground", (8, 8), "grayscale", 10, 1797, 1797),
    "shapes": Task("shapes", "circle/cross/square/triangle, filled or outlined, any place, size and rotation, 32x32 "
                   "grey with dots and noise, few images: translation augmentation and regularization should help",
                   (32, 32), "grayscale", 4, 1200, 200),
    "gratings": Task("gratings", "small faint coloured gratings in heavy noise, class = warm/cool hue x orientation "
                     "60/90/120, 24x24 RGB: local cues summed over the patch; a flip would swap classes",
                     (24, 24), "rgb", 6, 1800, 300),
    "shifted_digits": Task("shifted_digits", "scikit-learn's digits at 12-18 px, rotated +-20 degrees, anywhere in "
                           "28x28 grey with noise: translation (and rotation) augmentation should help",
                           (28, 28), "grayscale", 10, 1797, 300),
    "tiny_noisy": Task("tiny_noisy", "300 images of 16x16 grey: faint fixed class patterns (shifted +-2 px) under "
                       "heavy noise: strong regularization and little capacity should win", (16, 16), "grayscale",
                       4, 300, 120),
    "counting": Task("counting", "1-5 bright blobs (class = count) and a dim distractor bar on noise, 32x32 grey: "
                     "needs the whole image summed; dropout on the pooled features and translation (cuts blobs at "
                     "the border) should hurt", (32, 32), "grayscale", 5, 3000, 250),
    "cifar_like": Task("cifar_like", "circle/square/triangle, solid or striped, random colour, on coloured clutter, "
                       "32x32 RGB, 6 classes: shape x texture needs depth; colour is no cue", (32, 32), "rgb", 6,
                       4000, 300),
}
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    DIGITS: tuple(str(d) for d in range(10)),
    "shapes": SHAPES,
    "gratings": tuple(f"{family}_{o:03d}" for family in ("cool", "warm") for o in ORIENTATIONS),
    "shifted_digits": tuple(str(d) for d in range(10)),
    "tiny_noisy": ("pattern_a", "pattern_b", "pattern_c", "pattern_d"),
    "counting": tuple(str(n) for n in range(1, 6)),
    "cifar_like": OBJECTS,
}
_GENERATORS: dict[str, Generator] = {
    "shapes": _by_label(_shapes, 4),
    "gratings": _by_label(_gratings, 6),
    "shifted_digits": _shifted_digit,
    "tiny_noisy": _by_label(_tiny_noisy, 4),
    "counting": _by_label(_counting, 5),
    "cifar_like": _by_label(_cifar_like, 6),
}
GENERATED = tuple(_GENERATORS)  # the tasks written as folders


def _task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def class_names(name: str) -> tuple[str, ...]:
    """The class folder names of task ``name`` in label order (sorted, the order the folder source reads them)."""
    _task(name)
    return CLASS_NAMES[name]


def make_arrays(name: str, *, quick: bool = False, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[N, H, W, C]`` and int labels of task ``name``; the same bytes for the same arguments."""
    task = _task(name)
    count = task.quick_images if quick else task.images
    if name == DIGITS:  # the source's own data, on its 0..16 scale mapped to bytes (for a look, not for training)
        images, targets = _sklearn_digits()
        x = np.rint(images[:count] * (255.0 / 16.0)).astype(np.uint8)[..., None]
        return x, targets[:count].copy()
    draw = _GENERATORS[name]
    channels = 1 if task.color_mode == "grayscale" else 3
    x = np.empty((count, *task.image_size, channels), dtype=np.uint8)
    y = np.empty(count, dtype=np.int64)
    for index in range(count):
        x[index], y[index] = draw(_rng(name, seed, index), index)
    return x, y


def fresh_arrays(name: str, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """``count`` more images of task ``name`` (indices after its full size): new draws, in no version of the task.

    None where new images would not be independent of the task's: ``digits`` (no generator) and
    ``shifted_digits`` (its full size uses every scikit-learn digit once already).
    """
    task = _task(name)
    if name in (DIGITS, "shifted_digits"):
        return None
    channels = 1 if task.color_mode == "grayscale" else 3
    x = np.empty((count, *task.image_size, channels), dtype=np.uint8)
    y = np.empty(count, dtype=np.int64)
    for k in range(count):
        index = task.images + k
        x[k], y[k] = _GENERATORS[name](_rng(name, seed, index), index)
    return x, y


def write_task(name: str, out: Path, *, quick: bool = False) -> Path:
    """Write task ``name`` as ``out/<name>/<class>/<index>.png`` (replacing an older copy); return that folder."""
    from PIL import Image

    if name == DIGITS:
        raise ValueError("digits is the built-in data (data.source: digits); it is not written as a folder")
    x, y = make_arrays(name, quick=quick)
    folder = Path(out) / name
    # Written beside and swapped in: an interrupted run never leaves a half task that looks whole.
    with replace_dir_atomic(folder) as tmp:
        names = class_names(name)
        for label in names:
            (tmp / label).mkdir()
        for index, (image, label) in enumerate(zip(x, y, strict=True)):
            pixels = image[..., 0] if image.shape[-1] == 1 else image
            Image.fromarray(pixels, mode="L" if image.shape[-1] == 1 else "RGB").save(
                tmp / names[label] / f"{index:05d}.png", optimize=False)
    return folder


def data_params(name: str, folder: Path | None) -> dict[str, Any]:
    """The ``data:`` overrides of params.yaml that make the pipeline read task ``name`` (from ``folder``)."""
    task = _task(name)
    if name == DIGITS:
        return {"source": "digits"}
    if folder is None:
        raise ValueError(f"task {name!r} is read from a folder: pass the one write_task returned")
    return {"source": "images", "images_dir": str(folder), "image_size": list(task.image_size),
            "color_mode": task.color_mode}


# ------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder that receives one sub-folder per task")
    parser.add_argument("--quick", action="store_true", help="the small versions (Task.quick_images each)")
    parser.add_argument("--tasks", default=None, help=f"comma-separated subset of: {', '.join(TASKS)}, or of the "
                        "big folders (never in the default set): big_grey, big_rgb (bench/big_folders.py)")
    args = parser.parse_args(argv)
    chosen = list(TASKS) if args.tasks is None else [t.strip() for t in args.tasks.split(",") if t.strip()]
    # The MNIST/CIFAR-sized folders live in big_folders (imported here only: it imports this module).
    from big_folders import BIG_TASKS, write_big_task

    unknown = [t for t in chosen if t not in TASKS and t not in BIG_TASKS]
    if unknown or not chosen:
        print(f"--tasks: unknown task(s) {', '.join(unknown) or '(none given)'}; known: "
              f"{', '.join([*TASKS, *BIG_TASKS])}", file=sys.stderr)
        return 2
    for name in chosen:
        if name in BIG_TASKS:
            start = time.perf_counter()
            count = BIG_TASKS[name].quick_images if args.quick else BIG_TASKS[name].images
            folder = write_big_task(name, args.out, count=count)
            print(f"{name}: {count} images -> {folder} ({time.perf_counter() - start:.1f} s)")
            continue
        task = TASKS[name]
        if name == DIGITS:
            print(f"{name}: built in (data.source: digits), not written")
            continue
        start = time.perf_counter()
        folder = write_task(name, args.out, quick=args.quick)
        print(written(name, task, task.quick_images if args.quick else task.images, folder, start))
    return 0


def written(name: str, task: Task, count: int, folder: Path, start: float) -> str:
    """The line a generator prints for a folder it wrote (``start``: its ``time.perf_counter()``)."""
    size = "x".join(map(str, task.image_size))
    return (f"{name}: {count} images, {size} {task.color_mode}, {task.classes} classes -> {folder} "
            f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
