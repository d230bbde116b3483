"""A tracking server that dies mid-search: bounded wait, one clear line, the trial retried on resume.

A real ``mlflow server`` on 127.0.0.1 (its own process group, stopped by pid), killed while a
real ``python -m pipeline tune`` runs against it (in one process, or under a distributed worker),
then restarted on the same store. The search loop itself (``run_trials``, shared by both) is
also checked in-process with a store that fails at a chosen call.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import run_cli, seed_store, write_params
from tests.tune_fixtures import TINY_SPACE, hypermodel, tiny_data, tiny_params


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int, template: Path | None = None) -> subprocess.Popen:
    """``mlflow server`` on ``folder/server.db`` (``template``: a new store copied there first, if none is)."""
    if template is not None and not (folder / "server.db").exists():
        seed_store(template, folder / "server.db")
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


def bind_when_free(port: int, handler: type) -> http.server.ThreadingHTTPServer:
    """A server on ``port`` as soon as the killed one's processes have let go of it (seconds at most)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:  # EADDRINUSE: a worker of the killed server still exiting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    server.wait(30)


# MLflow's waits between its retries (2 + 4 + 8 s and up to 1 s of jitter each, by default) are idle
# wall time in a test about what the pipeline does once they are over: set to none where nothing needs
# them (the single-process test), as a user may
# (``bound_http_retries`` keeps a user's own setting; tests/test_tracking_retries.py checks the defaults).
NO_RETRY_WAITS = {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0", "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}


def outage_project(project: Path, tmp_path: Path, *, samples: int, space: dict, trials: int,
                   epochs: int) -> tuple[Path, int, str]:
    """A random search on a digits subset, preprocessed, logging to a server yet to start: (its folder, port, URI)."""
    write_params(project, data={"max_samples": samples}, search_space=space,
                 tune={"tuner": "random", "max_trials": trials, "max_epochs": epochs, "early_stopping_patience": 9,
                       "initial_points": []},
                 mlflow={"experiment": "outage", "outage_seconds": 8})
    assert run_cli(["preprocess"], cwd=project).returncode == 0
    folder = tmp_path / "server"
    folder.mkdir()
    port = free_port()
    return folder, port, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_server_killed_mid_search_stops_it_in_bounded_time_and_the_rerun_retries_the_trial(
        project: Path, tmp_path: Path, new_store_template: Path) -> None:
    from mlflow import MlflowClient

    folder, port, uri = outage_project(project, tmp_path, samples=300, space=TINY_SPACE, trials=4, epochs=4)
    env = {**os.environ, **NO_RETRY_WAITS, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(project)}
    server = start_server(folder, port, new_store_template)
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

        server = start_server(folder, port, new_store_template)
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


class DyingStore:
    """A ``TrialTracker`` whose ``fail_at``-th ``log_epoch`` fails as a dead store does; it records every
    call, so a test sees whether anything called the store after it failed."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at, self.calls, self.dead = fail_at, [], False
        self.epochs = 0

    def _call(self, name: str) -> None:
        self.calls.append((name, self.dead))
        if self.dead:
            raise AssertionError(f"{name} called the dead store")

    def start_trial(self, trial_id: str, params: dict, tags: dict) -> str:
        self._call("start_trial")
        return f"run-{trial_id}"

    def log_epoch(self, run_id: str | None, step: int, metrics: dict) -> None:
        self._call("log_epoch")
        self.epochs += 1
        if self.epochs == self.fail_at:
            from pipeline.errors import TrackingError

            self.dead = True
            raise TrackingError("the tracking store http://127.0.0.1:1 failed: gone; finished trials are kept: "
                                "rerun when it is back to resume the search")

    def end_trial(self, run_id: str | None, status: str, metrics: dict, tags: dict) -> None:
        self._call("end_trial")

    def close_leftover_runs(self, ended: dict, worker: str | None = None) -> int:
        self._call("close_leftover_runs")
        return 0


def test_the_search_loop_ends_the_trial_killed_without_calling_the_dead_store(tmp_path: Path) -> None:
    import keras

    from pipeline.errors import TrackingError
    from pipeline.tuning.records import TrialRecord
    from pipeline.tuning.search import run_trials
    from pipeline.tuning.tuners import make_tuner

    params = tiny_params(tmp_path, tuner="random", max_trials=3, early_stopping_patience=9)
    store = DyingStore(fail_at=5)  # trial 0 logs 3 epochs; the 2nd epoch of trial 1 fails
    keras.utils.set_random_seed(params.seed)
    tuner = make_tuner(params.tune, hypermodel(params), seed=params.seed, project_name="loop", tracker=store)
    with pytest.raises(TrackingError) as raised:
        run_trials(tuner, params.tune, tiny_data(), stream=open(os.devnull, "w"))  # noqa: SIM115
    assert raised.value.lines == [str(raised.value)] and "rerun" in str(raised.value)
    assert store.calls[-1] == ("log_epoch", False) and not any(dead for _, dead in store.calls)
    records = {r.trial_id: r for d in sorted(Path(tuner.project_dir).glob("trial_*"))
               if (r := TrialRecord.load(d)) is not None}
    assert [r.status for r in records.values()] == ["FINISHED", "KILLED"]  # not FAILED: retried on resume
    killed = list(records.values())[1]
    assert killed.error.startswith("the tracking store") and len(killed.history) == 2


class RequestLog(http.server.BaseHTTPRequestHandler):
    """Stands on a dead server's port and answers 503 to everything, noting each request."""

    seen: list[str] = []

    def _answer(self) -> None:
        RequestLog.seen.append(self.path)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_server_killed_under_a_distributed_worker_kills_its_trial_and_the_worker_says_one_line(
        project: Path, tmp_path: Path, new_store_template: Path) -> None:
    from mlflow import MlflowClient

    folder, port, uri = outage_project(project, tmp_path, samples=600, space={**TINY_SPACE, "batch_size": 16},
                                       trials=3, epochs=8)
    # KERASTUNER_TUNER_ID=chief: this host runs the chief and tune.workers (1) worker, tuner0
    # MLflow's own retry waits kept here: they are what lets the stand-in server below see the worker's call
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(project), "KERASTUNER_TUNER_ID": "chief"}
    env.pop("KERASTUNER_ORACLE_IP", None)
    env.pop("KERASTUNER_ORACLE_PORT", None)
    server = start_server(folder, port, new_store_template)
    fake = None
    try:
        tune = subprocess.Popen([sys.executable, "-m", "pipeline", "tune"], cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        client = MlflowClient(uri)
        deadline = time.monotonic() + 300
        while tune.poll() is None and time.monotonic() < deadline:  # a trial run with an epoch logged
            time.sleep(0.5)
            exp = client.get_experiment_by_name("outage")
            running = exp and client.search_runs([exp.experiment_id], "tags.run_type = 'trial' and "
                                                 "attributes.status = 'RUNNING'")
            if running and running[0].data.metrics:
                break
        stop(server)
        fake = bind_when_free(port, RequestLog)
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        out, err = tune.communicate(timeout=300)
        assert tune.returncode == 2, out[-3000:] + err[-3000:]
        assert "Traceback" not in out + err
        worker_errors = [line for line in out.splitlines() if line.startswith("[tuner0] error:")]
        assert len(worker_errors) == 1 and "the tracking store http://127.0.0.1:" in worker_errors[0]
        assert "[launcher] worker tuner0 exited" not in out  # not restarted against a dead store
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("error: the tracking store http://127.0.0.1:") and "rerun" in lines[-1]
        # the one call that found the store dead (with MLflow's retries), nothing after it
        assert len(set(RequestLog.seen)) == 1 and len(RequestLog.seen) <= 4, RequestLog.seen
        assert not any(re.search(r"runs/(update|set-tag)", path) for path in RequestLog.seen)
        records = [json.loads(p.read_text()) for p in (project / ".tuner").glob("search-*/trial_*/pipeline_trial.json")]
        assert [r["status"] for r in records].count("KILLED") == 1, records
        assert "FAILED" not in {r["status"] for r in records}
        oracle = [json.loads(p.read_text())["status"] for p in (project / ".tuner").glob("search-*/trial_*/trial.json")]
        assert "FAILED" not in oracle
    finally:
        if fake is not None:
            fake.shutdown()
            fake.server_close()
        stop(server)
