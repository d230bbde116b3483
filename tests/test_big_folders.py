"""The big benchmark folders (bench/big_folders.py): deterministic prefixes, read back by ``data.source: images``.

Also the parallel decoding of a folder (``pipeline.data.images.decode_into``): the same bytes
as decoding in one process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import parse_params
from pipeline.data import images
from pipeline.data.sources import load_source
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "big_folders.py"


big = load_script("bench_big_folders", SCRIPT)


def _write(out: Path, task: str, count: int, workers: int) -> Path:
    """The CLI in a fresh process (its workers fork a process without TensorFlow), 16 images per work item."""
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--tasks", task, "--count", str(count),
                    "--workers", str(workers), "--chunk", "16"], check=True, capture_output=True, text=True)
    return out / task


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def _data(task: str, folder: Path) -> object:
    return parse_params({"seed": 0, "data": big.data_params(task, folder)}).data


def test_big_tasks_have_the_promised_sizes() -> None:
    grey, rgb = big.BIG_TASKS["big_grey"], big.BIG_TASKS["big_rgb"]
    assert (grey.images, grey.image_size, grey.color_mode, grey.classes) == (60_000, (28, 28), "grayscale", 10)
    assert (rgb.images, rgb.image_size, rgb.color_mode, rgb.classes) == (50_000, (32, 32), "rgb", 6)
    for name, task in big.BIG_TASKS.items():
        assert list(big.BIG_CLASS_NAMES[name]) == sorted(big.BIG_CLASS_NAMES[name])  # folder order = label order
        assert len(big.BIG_CLASS_NAMES[name]) == task.classes


def test_prefix_is_deterministic_whatever_the_count_and_workers(tmp_path: Path) -> None:
    two = _files(_write(tmp_path / "a", "big_grey", 50, workers=2))  # 4 work items over 2 processes
    one = _files(big.write_big_task("big_grey", tmp_path / "b", count=70, workers=1))
    assert len(two) == 50 and len(one) == 70
    assert all(one[name] == data for name, data in two.items())  # the first 50 of 70: the same bytes
    big.write_big_task("big_grey", tmp_path / "a", count=50, workers=1)  # written again: replaced, same bytes
    assert _files(tmp_path / "a" / "big_grey") == two
    x, y = big.make_big_arrays("big_grey", 50)
    other, _ = big.make_big_arrays("big_grey", 50, seed=1)
    assert not np.array_equal(x, other)  # the seed matters: the equality above could fail
    assert len(set(y.tolist())) >= 8 and x.std() > 10


@pytest.mark.parametrize(("task", "count"), [("big_grey", 50), ("big_rgb", 24)])
def test_round_trip_through_the_images_source(tmp_path: Path, task: str, count: int) -> None:
    folder = big.write_big_task(task, tmp_path, count=count, workers=1)
    raw = load_source(_data(task, folder))
    x, y = big.make_big_arrays(task, count)
    # the source reads class folders in sorted order, files sorted by name within each
    order = sorted(range(count), key=lambda i: (big.BIG_CLASS_NAMES[task][y[i]], f"{i:05d}"))
    assert raw.class_names == list(big.BIG_CLASS_NAMES[task])
    np.testing.assert_array_equal(raw.x, x[order].astype(np.float32))
    np.testing.assert_array_equal(raw.y, y[order])


def test_parallel_decoding_equals_one_process(tmp_path: Path, monkeypatch) -> None:
    folder = big.write_big_task("big_grey", tmp_path, count=50, workers=1)
    (folder / "3" / "broken.png").write_bytes(b"not a png")  # a bad file is reported, not fatal here
    files = sorted(folder.rglob("*.png"))
    serial = np.empty((len(files), 28, 28, 1), dtype=np.float32)
    bad_serial = images.decode_into(files, (28, 28), "grayscale", serial, workers=1)
    monkeypatch.setattr(images, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(images, "DECODE_CHUNK", 16)  # several chunks, more than the 2 workers hold
    parallel = np.empty_like(serial)
    bad_parallel = images.decode_into(files, (28, 28), "grayscale", parallel, workers=2)
    assert [i for i, _ in bad_parallel] == [i for i, _ in bad_serial] == [files.index(folder / "3" / "broken.png")]
    good = np.setdiff1d(np.arange(len(files)), [bad_serial[0][0]])
    np.testing.assert_array_equal(parallel[good], serial[good])
