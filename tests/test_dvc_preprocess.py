"""Real DVC: `dvc repro preprocess` in a temp git repo produces the outputs; a rerun does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.data.store import load_meta
from tests.conftest import REPO, write_params


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(project), "DVC_NO_ANALYTICS": "1"})


@pytest.fixture
def clone(dvc_project: Path) -> Path:
    """``dvc_project`` with what a fresh clone also has: the empty images folder (a preprocess dep)."""
    (dvc_project / "data/raw").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "data/raw/.gitkeep", dvc_project / "data/raw/.gitkeep")
    return dvc_project


def test_dvc_repro_preprocess_then_nothing_changes(clone: Path) -> None:
    write_params(clone, data={"max_samples": 200})
    first = dvc(clone, "repro", "preprocess")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'preprocess'" in first.stdout
    assert load_meta(clone / "data/processed")["sizes"] == {"train": 140, "validation": 30, "test": 30}
    assert (clone / "dvc.lock").is_file()

    second = dvc(clone, "repro", "preprocess")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout and "didn't change" in second.stdout

    # a changed parameter reruns the stage
    write_params(clone, split={"test": 0.2})
    third = dvc(clone, "repro", "preprocess")
    assert "Running stage 'preprocess'" in third.stdout, third.stdout + third.stderr


@pytest.mark.slow
def test_a_new_image_makes_preprocess_out_of_date(clone: Path, make_images: Callable[..., Path]) -> None:
    root = make_images(clone / "data/raw", {"cats": 6, "dogs": 6})
    write_params(clone, data={"source": "images", "image_size": [8, 8]})
    first = dvc(clone, "repro", "preprocess")
    assert first.returncode == 0, first.stdout + first.stderr
    assert load_meta(clone / "data/processed")["sizes"]["train"] > 0
    assert "up to date" in dvc(clone, "status", "preprocess").stdout

    shutil.copy2(root / "dogs/dogs_000.png", root / "dogs/dogs_new.png")
    status = dvc(clone, "status", "preprocess")
    assert status.returncode == 0, status.stderr
    changed = status.stdout
    assert "preprocess:" in changed and "changed deps" in changed and "modified:" in changed, changed
    assert "data/raw" in changed, changed


def test_an_invalid_param_stops_dvc_repro_before_it_removes_any_output(clone: Path) -> None:
    """DVC removes a stage's outputs before running it; the `validate` stage fails first, so they survive."""
    write_params(clone, data={"max_samples": 200})
    assert dvc(clone, "repro", "preprocess").returncode == 0
    before = load_meta(clone / "data/processed")

    # preprocess is out of date (max_samples) and tune.factor is invalid: nothing may be removed
    write_params(clone, data={"max_samples": 100}, tune={"factor": 1})
    failed = dvc(clone, "repro")
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert "Running stage 'preprocess'" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tune.factor" in errors[0], output
    assert "Traceback" not in output, output
    assert load_meta(clone / "data/processed") == before  # still the 200-sample split, whole
