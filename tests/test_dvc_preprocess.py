"""Real DVC: `dvc repro preprocess` in a temp git repo produces the outputs; a rerun does nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.data.store import load_meta
from tests.conftest import write_params


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(project)})


def test_dvc_repro_preprocess_then_nothing_changes(dvc_project: Path) -> None:
    write_params(dvc_project, data={"max_samples": 200})
    first = dvc(dvc_project, "repro", "preprocess")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Running stage 'preprocess'" in first.stdout
    assert load_meta(dvc_project / "data/processed")["sizes"] == {"train": 140, "validation": 30, "test": 30}
    assert (dvc_project / "dvc.lock").is_file()

    second = dvc(dvc_project, "repro", "preprocess")
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout and "didn't change" in second.stdout

    # a changed parameter reruns the stage
    write_params(dvc_project, split={"test": 0.2})
    third = dvc(dvc_project, "repro", "preprocess")
    assert "Running stage 'preprocess'" in third.stdout, third.stdout + third.stderr
