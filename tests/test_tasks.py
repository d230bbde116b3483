"""The task suite (bench/tasks.py): deterministic, the promised shapes and sizes, read back by ``data.source: images``.

No TensorFlow training: the generator, its folders and its CLI only (the reference search is
``bench/task_reference.py``, a benchmark).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import parse_params
from pipeline.data.sources import load_source
from tests.conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "tasks.py"


tasks = load_script("bench_tasks", SCRIPT)
GENERATED = [name for name in tasks.TASKS if name != tasks.DIGITS]


def test_the_suite_spans_what_issue_21_asks_for() -> None:
    assert len(GENERATED) >= 6 and tasks.DIGITS in tasks.TASKS
    assert set(GENERATED) == set(tasks.GENERATED)
    sides = [min(t.image_size) for t in tasks.TASKS.values()]
    assert min(sides) == 8 and max(sides) >= 32
    assert {t.color_mode for t in tasks.TASKS.values()} == {"grayscale", "rgb"}
    sizes = [t.images for t in tasks.TASKS.values()]
    assert min(sizes) <= 300 and max(sizes) >= 3000 and max(sizes) <= 6000  # a search stays feasible on 2 cores
    for name, task in tasks.TASKS.items():
        assert task.name == name and task.description and "\n" not in task.description
        assert task.classes == len(tasks.class_names(name)) and list(tasks.class_names(name)) == sorted(
            tasks.class_names(name), key=lambda c: tasks.class_names(name).index(c))
        # the folder source orders classes by name: label order must be the sorted order
        assert list(tasks.class_names(name)) == sorted(tasks.class_names(name))
        assert 0 < task.quick_images <= task.images and max(task.image_size) <= 40


@pytest.mark.parametrize("name", GENERATED)
def test_quick_arrays_have_the_promised_shape_classes_and_balance(name: str) -> None:
    task = tasks.TASKS[name]
    x, y = tasks.make_arrays(name, quick=True)
    channels = 1 if task.color_mode == "grayscale" else 3
    assert x.shape == (task.quick_images, *task.image_size, channels) and x.dtype == np.uint8
    assert y.shape == (task.quick_images,) and np.issubdtype(y.dtype, np.integer)
    counts = np.bincount(y, minlength=task.classes)
    assert len(counts) == task.classes and counts.min() >= 0.7 * counts.max()  # every class, near balanced
    assert x.std() > 10  # an image, not a constant


def test_arrays_are_deterministic_and_quick_is_a_prefix_of_full() -> None:
    first, again = tasks.make_arrays("tiny_noisy"), tasks.make_arrays("tiny_noisy")
    assert first[0].tobytes() == again[0].tobytes() and np.array_equal(first[1], again[1])
    assert len(first[0]) == tasks.TASKS["tiny_noisy"].images == 300
    quick = tasks.make_arrays("tiny_noisy", quick=True)
    assert np.array_equal(quick[0], first[0][:len(quick[0])]) and np.array_equal(quick[1], first[1][:len(quick[1])])
    other = tasks.make_arrays("tiny_noisy", quick=True, seed=1)
    assert not np.array_equal(other[0], quick[0])


def test_digits_is_the_builtin_source_never_a_folder(tmp_path: Path) -> None:
    assert tasks.data_params("digits", None) == {"source": "digits"}
    with pytest.raises(ValueError, match="built-in"):
        tasks.write_task("digits", tmp_path)
    x, y = tasks.make_arrays("digits")
    assert x.shape == (1797, 8, 8, 1) and sorted(set(y.tolist())) == list(range(10))
    with pytest.raises(ValueError, match="unknown task"):
        tasks.make_arrays("nope")


@pytest.mark.parametrize("name", GENERATED)
def test_written_folder_round_trips_through_the_image_folder_source(tmp_path: Path, name: str) -> None:
    task = tasks.TASKS[name]
    folder = tasks.write_task(name, tmp_path, quick=True)
    assert folder == tmp_path / name
    assert sorted(p.name for p in folder.iterdir()) == list(tasks.class_names(name))
    assert sum(1 for _ in folder.rglob("*.png")) == task.quick_images
    data = tasks.data_params(name, folder)
    assert data["source"] == "images" and data["color_mode"] == task.color_mode
    raw = load_source(parse_params({"data": data}).data)  # what `data.source: images` reads
    x, y = tasks.make_arrays(name, quick=True)
    assert raw.class_names == list(tasks.class_names(name))
    assert raw.x.shape == x.shape and raw.x.shape[-1] == (1 if task.color_mode == "grayscale" else 3)
    # pixel for pixel and label for label, in the source's order: class by class, files by name (= index)
    order = np.argsort(y, kind="stable")
    np.testing.assert_array_equal(raw.x, x[order].astype(np.float32))
    np.testing.assert_array_equal(raw.y, y[order])


def test_writing_twice_gives_the_same_bytes_and_replaces_the_old_copy(tmp_path: Path) -> None:
    first = tasks.write_task("gratings", tmp_path / "a", quick=True)
    second = tasks.write_task("gratings", tmp_path / "b", quick=True)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)
    stray = first / tasks.class_names("gratings")[0] / "99999.png"
    stray.write_bytes((first / files[0]).read_bytes())
    tasks.write_task("gratings", tmp_path / "a", quick=True)  # a rewrite leaves no file of an older copy
    assert not stray.exists() and sum(1 for _ in first.rglob("*.png")) == len(files)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["gratings"]  # no temporary folder left


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_the_chosen_tasks_one_line_each(tmp_path: Path) -> None:
    done = run_script("--out", str(tmp_path), "--quick", "--tasks", "tiny_noisy,counting")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("tiny_noisy: 120 images, 16x16 grayscale")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counting", "tiny_noisy"]
    assert sum(1 for _ in (tmp_path / "counting").rglob("*.png")) == tasks.TASKS["counting"].quick_images


def test_cli_rejects_an_unknown_task_with_one_line_and_exit_2(tmp_path: Path) -> None:
    done = run_script("--out", str(tmp_path / "out"), "--tasks", "shapes,nope")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "nope" in done.stderr and "shapes" in done.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the check


def test_reference_configurations_are_points_of_the_pipelines_search_space() -> None:
    from pipeline.model.space import space_items

    reference = load_script("bench_task_reference", REPO / "bench" / "task_reference.py")
    raw = reference.params_yaml()
    space = parse_params(raw).search_space
    configs = reference.configurations(raw, space, quick=False, smoke=False)
    recipe = raw["tune"]["initial_points"][0]
    assert {k: configs["recipe"][k] for k in recipe} == recipe  # the shipped recipe itself
    assert len(configs) >= 8 and len({tuple(sorted(c.items())) for c in configs.values()}) == len(configs)
    for name, values in configs.items():
        outside = [key for key, spec in space_items(space) if not spec.allows(values[key])]
        assert not outside, f"{name}: {outside} outside search_space"


def test_reference_margin_interval_separates_a_real_gain_from_none() -> None:
    reference = load_script("bench_task_reference", REPO / "bench" / "task_reference.py")
    rng = np.random.default_rng(0)
    worse = rng.random(1000) < 0.6
    better = worse | (rng.random(1000) < 0.5)  # right wherever `worse` is, and on about half of the rest
    gain = reference.paired_bootstrap(better, worse)
    assert gain["low"] > 0.1 and gain["low"] <= gain["mean"] <= gain["high"]
    none = reference.paired_bootstrap(worse, worse)
    assert none == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 1000}
