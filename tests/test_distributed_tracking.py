"""Several processes logging trials of one search at once: SQLite must not fail with
"database is locked"; PostgreSQL (for many hosts) when a local server can be started."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline.tracking.retry import RetryingClient, retry_locked

LOGGER_SCRIPT = """
import sys
from pipeline.tracking.runs import TrialRunLogger
uri, experiment_id, parent, worker, trials = sys.argv[1:6]
logger = TrialRunLogger(uri, experiment_id, parent, "hash", tags={"worker": worker})
for t in range(int(trials)):
    run_id = logger.start_trial(f"{worker}-{t}", {"lr": 0.01, "units": 32}, {"trial_id": f"{worker}-{t}"})
    for epoch in range(3):
        logger.log_epoch(run_id, epoch, {"loss": 1.0 / (epoch + 1), "val_accuracy": 0.1 * epoch})
    logger.end_trial(run_id, "FINISHED", {"score": 0.5}, {})
"""


def test_retry_locked_retries_only_a_locked_store() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert retry_locked(flaky, first_delay=0.001)() == "ok" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such run")

    calls.clear()
    with pytest.raises(ValueError):
        retry_locked(broken, first_delay=0.001)()
    assert len(calls) == 1

    class Client:
        name = "x"

        def hello(self) -> str:
            return "hi"

    wrapped = RetryingClient(Client())
    assert wrapped.name == "x" and wrapped.hello() == "hi"


def _concurrent_trials(uri: str, tmp_path: Path, processes: int = 4, trials: int = 15) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = client.create_experiment("tune-test", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment_id, tags={"run_type": "search"}).info.run_id
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [subprocess.Popen([sys.executable, "-c", LOGGER_SCRIPT, uri, experiment_id, parent, f"tuner{k}",
                               str(trials)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(processes)]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-2000:]
    runs = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)
    assert len(runs) == processes * trials
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 3 for r in runs[:5])


@pytest.mark.slow
def test_processes_share_a_sqlite_store(tmp_path: Path) -> None:
    _concurrent_trials(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)


def _postgres_bin() -> Path | None:
    for candidate in [shutil.which("pg_ctl"), *sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))]:
        if candidate:
            return Path(candidate).resolve().parent  # /usr/local/bin may hold only some links
    return None


@pytest.mark.slow
def test_processes_share_a_postgresql_store(tmp_path: Path) -> None:
    """A throw-away PostgreSQL server started by the test (as user postgres when run as root)."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    as_user: list[str] = []
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a postgres user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    pytest.importorskip("psycopg", reason="MLflow's PostgreSQL store needs psycopg (pip install -e '.[postgres]')")
    # pytest's tmp_path is private to root; the server's folder must belong to its own user.
    server_dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data = server_dir / "data"
    if as_user:
        shutil.chown(server_dir, user="postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subprocess.run([*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-w", "-l", server_dir / "pg.log", "-o",
                    f"-p {port} -k {server_dir} -c listen_addresses=127.0.0.1", "start"], check=True,
                   capture_output=True)
    try:
        subprocess.run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
                       check=True, capture_output=True)
        _concurrent_trials(f"postgresql://postgres@127.0.0.1:{port}/mlflow", tmp_path)
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(server_dir, ignore_errors=True)
