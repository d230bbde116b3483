"""A tracking server that dies mid-search: bounded wait, one clear line, the trial retried on resume.

A real ``mlflow server`` on 127.0.0.1 (its own process group, stopped by pid), killed while a
real ``python -m pipeline tune`` runs against it, then restarted on the same store.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(folder / "server.log", "a")  # noqa: SIM115 - the child keeps it; closed with the process
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
         str(folder / "artifacts")], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                stop(server)
                pytest.fail("mlflow server did not start:\n" + (folder / "server.log").read_text()[-3000:])
            time.sleep(0.3)


def stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    server.wait(30)


@pytest.mark.slow
def test_server_killed_mid_search_stops_it_in_bounded_time_and_the_rerun_retries_the_trial(
        project: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    write_params(project, data={"max_samples": 300}, search_space=TINY_SPACE,
                 tune={"tuner": "random", "max_trials": 4, "max_epochs": 4, "early_stopping_patience": 9,
                       "initial_points": []},
                 mlflow={"experiment": "outage", "outage_seconds": 20})
    assert run_cli(["preprocess"], cwd=project).returncode == 0
    folder = tmp_path / "server"
    folder.mkdir()
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(project)}
    server = start_server(folder, port)
    try:
        tune = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for line in tune.stdout:  # the first trial ended: kill the server during the second
            if line.startswith("trial ") and ":" in line:
                break
        stop(server)
        killed_at = time.monotonic()
        out, err = tune.communicate(timeout=240)
        waited = time.monotonic() - killed_at
        assert tune.returncode == 2, err[-3000:]
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("error: the tracking store http://127.0.0.1:") and "rerun" in lines[-1]
        assert "Traceback" not in err
        assert waited < 120  # bounded by mlflow.outage_seconds (and the trial's own epochs), not 15 minutes

        server = start_server(folder, port)
        again = run_cli(["tune"], cwd=project, env={"MLFLOW_TRACKING_URI": uri}, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("outage")
        runs = client.search_runs([experiment.experiment_id], "tags.run_type = 'trial'", max_results=100)
        statuses = Counter(r.info.status for r in runs)
        assert statuses["RUNNING"] == 0 and statuses["FAILED"] == 0, statuses
        finished = Counter(r.data.tags["trial_id"] for r in runs if r.info.status == "FINISHED")
        assert len(finished) == 4
        assert max(finished.values()) == 1
        # the trial the outage interrupted (if its run had started: the outage may also hit the
        # creation of the next trial's run) ended KILLED and was retried to FINISHED
        killed = [r for r in runs if r.info.status == "KILLED"]
        assert len(killed) <= 1 and all(finished[r.data.tags["trial_id"]] == 1 for r in killed)
        parents = client.search_runs([experiment.experiment_id], "tags.run_type = 'search'")
        assert [p.info.status for p in parents] == ["FINISHED"]
    finally:
        stop(server)
