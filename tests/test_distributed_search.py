"""Distributed tuning on one machine: real chief and worker processes, real gRPC on 127.0.0.1,
a real SQLite MLflow store; a tiny Hyperband on a digits subset."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE, child_runs, parent_runs

TUNE = {"max_epochs": 3, "factor": 3, "early_stopping_patience": 3, "max_consecutive_failed_trials": 10}


def _prepare(project: Path, **space: object) -> None:
    write_params(project, data={"max_samples": 300}, search_space={**TINY_SPACE, **space}, tune=TUNE,
                 mlflow={"experiment": "tune-test"})
    result = run_cli(["preprocess"], cwd=project, timeout=300)
    assert result.returncode == 0, result.stderr


def _oracle_trials(project: Path) -> dict[str, str]:
    """trial id -> status, from KerasTuner's own files in the shared tuner directory."""
    files = list((project / ".tuner").glob("search-*/trial_*/trial.json"))
    return {(t := json.loads(f.read_text()))["trial_id"]: t["status"] for f in files}


def _check_accounting(project: Path) -> list:
    store = os.environ["MLFLOW_TRACKING_URI"]
    trials = _oracle_trials(project)
    assert trials and set(trials.values()) <= {"COMPLETED", "FAILED"}
    runs = child_runs(store)
    statuses = Counter(r.info.status for r in runs)
    assert statuses["RUNNING"] == 0, statuses
    ended = Counter(r.data.tags["trial_id"] for r in runs if r.info.status in ("FINISHED", "FAILED"))
    assert set(ended) == set(trials) and max(ended.values()) == 1  # each trial exactly once
    assert {r.data.tags["worker"] for r in runs} <= {"tuner0", "tuner1"}
    parents = parent_runs(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in runs)
    assert parents[0].data.metrics["trials"] == len(trials)
    metrics = json.loads((project / "results/tune/metrics.json").read_text())
    assert metrics["trials"] == len(trials)
    best = json.loads((project / "results/tune/best_hparams.json").read_text())
    assert best["search_run_id"] == parents[0].info.run_id and best["trial_id"] in trials
    rows = (project / "results/tune/trials.csv").read_text().strip().splitlines()
    assert len(rows) == len(trials) + 1
    return runs


@pytest.mark.slow
def test_chief_and_two_workers_complete_a_hyperband(project: Path) -> None:
    _prepare(project)
    result = run_cli(["tune", "--workers", "2"], cwd=project, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[chief] chief listening on 127.0.0.1:" in result.stdout
    assert re.search(r"^\[tuner[01]\] trial 0000: ", result.stdout, re.M)
    _check_accounting(project)
    for name in ("trials.csv", "history.csv", "summary.png", "best_hparams.json"):
        assert (project / "results/tune" / name).stat().st_size > 0

    # the finished search again: resumed, nothing logged twice
    again = run_cli(["tune", "--workers", "2"], cwd=project, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(child_runs(os.environ["MLFLOW_TRACKING_URI"])) == len(_oracle_trials(project))


@pytest.mark.slow
def test_bohb_with_two_workers_proposes_from_its_model(project: Path) -> None:
    """Three Hyperband iterations give the chief's oracle enough 1-epoch trials to model."""
    _prepare(project)
    write_params(project, tune={**TUNE, "tuner": "bohb", "hyperband_iterations": 3, "initial_points": []})
    result = run_cli(["tune", "--workers", "2"], cwd=project, timeout=420)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    _check_accounting(project)
    state = json.loads(next((project / ".tuner").glob("search-*/oracle.json")).read_text())
    assert state["model_proposals"] >= 1 and len(_oracle_trials(project)) == 18


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_its_trial_retried(project: Path) -> None:
    from mlflow import MlflowClient

    _prepare(project, batch_size=16)
    env = {**os.environ, "PYTHONPATH": str(project)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "tune", "--workers", "2"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    killed = False
    deadline = time.monotonic() + 150
    try:
        while not killed and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = [int(m.group(1)) for line in list(lines)
                    if (m := re.match(r"\[launcher\] started tuner1 \(pid (\d+)\)", line))]
            exp = client.get_experiment_by_name("tune-test")
            if not pids or exp is None:
                continue
            running = client.search_runs([exp.experiment_id], "tags.worker = 'tuner1' and "
                                         "attributes.status = 'RUNNING'")
            if running:
                os.kill(pids[-1], signal.SIGKILL)  # mid-trial: no chance to end its run
                killed = True
        assert killed, "".join(lines)[-3000:]
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    output = "".join(lines)
    assert proc.returncode == 0, output[-4000:]
    assert "[launcher] worker tuner1 exited (signal 9)" in output
    runs = _check_accounting(project)
    killed_runs = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed_runs) == 1 and killed_runs[0].data.tags["worker"] == "tuner1"
    finished = {r.data.tags["trial_id"] for r in runs if r.info.status == "FINISHED"}
    assert killed_runs[0].data.tags["trial_id"] in finished  # retried to the end


def test_a_chief_address_not_on_this_host_fails_at_start(project: Path) -> None:
    result = run_cli(["tune", "--workers", "2", "-S", "tune.chief_address=192.0.2.1"], cwd=project, timeout=120)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "192.0.2.1" in errors[0] and "address of this host" in errors[0]


def test_a_busy_chief_port_is_replaced_by_a_free_one(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from pipeline.errors import PipelineError
    from pipeline.tuning.distributed import pick_port, port_is_free

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        chosen = pick_port("127.0.0.1", port)
        assert chosen != port and port_is_free("127.0.0.1", chosen)
        assert f"tune.chief_port {port} is in use" in capsys.readouterr().out
        with pytest.raises(PipelineError, match="in use"):
            pick_port("127.0.0.1", port, fixed=True)
