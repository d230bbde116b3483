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


def oracle_trials(project: Path) -> dict[str, str]:
    """trial id -> status, from KerasTuner's own files in the shared tuner directory."""
    files = list((project / ".tuner").glob("search-*/trial_*/trial.json"))
    return {(t := json.loads(f.read_text()))["trial_id"]: t["status"] for f in files}


def check_accounting(project: Path, workers: tuple[str | None, ...] = ("tuner0", "tuner1")) -> list:
    """Each trial ended once in MLflow (FINISHED or FAILED) under the one search run, and in the outputs.

    ``workers``: the ``worker`` tags the trial runs may have (None: a one-process session's runs).
    """
    store = os.environ["MLFLOW_TRACKING_URI"]
    trials = oracle_trials(project)
    assert trials and set(trials.values()) <= {"COMPLETED", "FAILED"}
    runs = child_runs(store)
    statuses = Counter(r.info.status for r in runs)
    assert statuses["RUNNING"] == 0, statuses
    ended = Counter(r.data.tags["trial_id"] for r in runs if r.info.status in ("FINISHED", "FAILED"))
    assert set(ended) == set(trials) and max(ended.values()) == 1  # each trial exactly once
    assert {r.data.tags.get("worker") for r in runs} <= set(workers)
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


# A 2-worker search from start to end, its outputs, and the finished search run again: in
# tests/test_distributed_resume.py, on a search killed mid-way and resumed (one search for both).


@pytest.mark.slow
def test_bohb_with_two_workers_models_and_retries_the_trial_of_a_killed_worker(project: Path) -> None:
    """One 2-worker BOHB search, with a worker killed mid-trial: the launcher restarts it, its trial is
    retried to the end, and three Hyperband iterations still give the chief's oracle enough 1-epoch
    trials to model (one search for both checks: each costs a minute of TensorFlow start-ups)."""
    from mlflow import MlflowClient

    _prepare(project, batch_size=16)  # more steps per trial: the kill lands mid-trial
    write_params(project, tune={**TUNE, "tuner": "bohb", "hyperband_iterations": 3, "initial_points": []})
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
            if not pids:  # not before: the chief creates the store, and two first connections would race
                continue
            exp = client.get_experiment_by_name("tune-test")
            if exp is None:
                continue
            running = client.search_runs([exp.experiment_id], "tags.worker = 'tuner1' and "
                                         "attributes.status = 'RUNNING'")
            if running:
                os.kill(pids[-1], signal.SIGKILL)  # mid-trial: no chance to end its run
                killed = True
        assert killed, "".join(lines)[-3000:]
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    output = "".join(lines)
    assert proc.returncode == 0, output[-4000:]
    assert "[launcher] worker tuner1 exited (signal 9)" in output
    runs = check_accounting(project)
    killed_runs = [r for r in runs if r.info.status == "KILLED"]
    assert len(killed_runs) == 1 and killed_runs[0].data.tags["worker"] == "tuner1"
    finished = {r.data.tags["trial_id"] for r in runs if r.info.status == "FINISHED"}
    assert killed_runs[0].data.tags["trial_id"] in finished  # retried to the end
    state = json.loads(next((project / ".tuner").glob("search-*/oracle.json")).read_text())
    assert state["model_proposals"] >= 1 and len(oracle_trials(project)) == 18


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


@pytest.mark.slow
def test_a_time_budget_stops_the_workers_and_the_chief_and_is_logged(project: Path) -> None:
    """tune.time_budget counts from the command's start in every worker; once they stop on it, the chief
    (which would wait for workers to take the trials left) is stopped at once and the run says so."""
    _prepare(project)
    write_params(project, tune={**TUNE, "tuner": "random", "max_trials": 8, "max_epochs": 500,
                                "early_stopping_patience": 500, "initial_points": [], "time_budget": "5s"})
    result = run_cli(["tune", "--workers", "2"], cwd=project, timeout=420)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "did not stop within 60 s" not in output  # the chief was not left waiting for more workers
    assert "(tune.time_budget) spent after" in output
    (parent,) = parent_runs(os.environ["MLFLOW_TRACKING_URI"])
    metrics = parent.data.metrics
    assert parent.info.status == "FINISHED"
    assert metrics["stopped_by_budget"] == 1.0 and metrics["time_budget_s"] == 5.0
    trials = oracle_trials(project)
    assert 1 <= len(trials) < 8 and set(trials.values()) == {"COMPLETED"}  # cut trials scored, never FAILED
