"""The tune command's fast failures, before any training: exit 2 with one clear line."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_unreachable_tracking_server_fails_at_start(project: Path) -> None:
    result = run_cli(["tune"], cwd=project, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unreachable" in errors[0] and "127.0.0.1:9" in errors[0]
