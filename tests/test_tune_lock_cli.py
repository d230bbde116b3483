"""Two `python -m pipeline tune` on one repository: the second exits 2 at once, naming the first's pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE


@pytest.mark.slow
def test_a_second_tune_on_the_same_tuner_directory_is_refused(project: Path) -> None:
    write_params(project, data={"max_samples": 300}, search_space=TINY_SPACE,
                 tune={"tuner": "random", "max_trials": 50, "max_epochs": 3, "initial_points": []})
    assert run_cli(["preprocess"], cwd=project).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(project)}
    first = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=project, env=env, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = project / ".tuner" / "search.lock"
    try:
        deadline = time.monotonic() + 180
        while not (lock.is_file() and lock.read_text().strip()):
            assert first.poll() is None and time.monotonic() < deadline, "the first search never took the lock"
            time.sleep(0.2)
        assert json.loads(lock.read_text())["pid"] == first.pid
        started = time.monotonic()
        second = run_cli(["tune"], cwd=project, timeout=180)
        assert second.returncode == 2 and time.monotonic() - started < 60
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: another search is running on .tuner (pid {first.pid}); wait for it or stop it")
        assert first.poll() is None  # the first one goes on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(120)
