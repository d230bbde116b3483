"""Faults of the environment give one clear line: bad flags, broken files, racing or read-only stores."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.tracking.store import _describe_store_error
from tests.conftest import REPO, run_cli


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("args", "flag"), [(["tune", "--workers", "0"], "--workers: got 0"),
                                            (["tune", "--workers", "two"], "--workers: got 'two'"),
                                            (["predict", "--top", "0", "x.png"], "--top: got 0")])
def test_counts_below_one_are_errors_not_defaults(project: Path, args: list[str], flag: str) -> None:
    result = run_cli(args, cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {flag}; allowed:") and result.stderr.count("\n") == 1, result.stderr


def test_a_file_that_is_not_a_keras_model_is_named_as_such(project: Path) -> None:
    (project / "notamodel.keras").write_text("hello\n")
    (project / "folder.keras").mkdir()
    for name in ("notamodel.keras", "folder.keras"):
        result = run_cli(["predict", "--model", name, "img.png"], cwd=project)
        assert result.returncode == 2
        assert error_lines(result.stderr) == [line for line in result.stderr.splitlines() if line], result.stderr
        assert f"error: {name}: " in result.stderr and "not a Keras model file" in result.stderr
        assert "File not found" not in result.stderr


@pytest.mark.slow
def test_the_error_line_comes_last_after_tensorflow_start_up_noise(project: Path) -> None:
    """An error found after TensorFlow loaded (its C++ logging on) is still the final line of stderr."""
    with zipfile.ZipFile(project / "broken.keras", "w") as archive:
        archive.writestr("config.json", '{"class_name": "Nothing"}')
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--model", "broken.keras", "img.png"],
                            cwd=project, env={**env, "PYTHONPATH": str(project)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("error: broken.keras: cannot load the Keras model"), result.stderr


def test_chief_on_all_interfaces_prints_one_warning(project: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{closed_port()}"}  # stops the run right after the warning
    result = run_cli(["tune", "--workers", "2", "-S", "tune.chief_address=0.0.0.0"], cwd=project, env=env)
    assert result.returncode == 2
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "0.0.0.0" in warnings[0] and "all interfaces" in warnings[0], result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: MLflow tracking server")
    result = run_cli(["tune", "--workers", "2"], cwd=project, env=env)  # 127.0.0.1: no warning
    assert "warning" not in result.stderr and result.returncode == 2


RACE = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
import mlflow  # noqa: F401 - imported before the barrier, so the processes reach the store together
from pipeline.tracking.store import configure
ready, count = Path(sys.argv[1]), int(sys.argv[2])
(ready / sys.argv[3]).touch()
while len(list(ready.iterdir())) < count:
    time.sleep(0.005)
configure(SimpleNamespace(mlflow=SimpleNamespace(tracking_uri=None, experiment="race", outage_seconds=60)))
print("ok")
"""


@pytest.mark.slow
def test_processes_creating_a_new_store_at_once_do_not_race(tmp_path: Path) -> None:
    """Without the lock, MLflow's schema migration fails here ('duplicate column name: step' and kin)."""
    db, ready, count = tmp_path / "mlflow.db", tmp_path / "ready", 2
    ready.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(ready), str(count), str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(count)]
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=240))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
    with sqlite3.connect(db) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM experiments")]
    assert names.count("race") == 1


def test_a_read_only_store_is_one_line_naming_the_file(project: Path) -> None:
    db = project / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (x)")
    command = [sys.executable, "-m", "pipeline", "predict", "--model", "models:/m@champion", "img.png"]
    if os.geteuid() == 0:  # root writes read-only files: drop that capability for the child
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot make a file read-only to the pipeline")
        caps = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    db.chmod(0o444)
    env = {**os.environ, "PYTHONPATH": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    try:
        result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120)
    finally:
        db.chmod(0o644)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: {db}: the MLflow database is read-only for this user; allowed: a file you can "
                             "write (chmod u+w), or another store in MLFLOW_TRACKING_URI\n")


def test_an_empty_store_file_is_named_before_mlflow_fills_it(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.tracking.store import check_sqlite_writable

    db = tmp_path / "mlflow.db"
    db.touch()
    check_sqlite_writable(db)
    assert capsys.readouterr().err == (f"warning: {db} is empty (0 bytes), not an MLflow store; a new store is "
                                       "created in it. If it held runs, stop now and restore it from a backup\n")
    db.write_bytes(b"SQLite format 3\x00")
    check_sqlite_writable(db)
    assert capsys.readouterr().err == ""


def test_mlflows_read_only_failure_is_one_line_too() -> None:
    error = Exception("(sqlite3.OperationalError) attempt to write a readonly database\n[SQL: INSERT ...]\n"
                      "(Background on this error at: https://sqlalche.me/e/20/e3q8)")
    line = _describe_store_error("sqlite:////data/mlflow.db", Path("/data/mlflow.db"), "cnn-tuning", error)
    assert line.startswith("/data/mlflow.db: the MLflow database is read-only")
    other = _describe_store_error("postgresql://u:pw@h/db", None, "x", Exception("boom\n" + "SQL " * 1000))
    assert other == "MLflow store postgresql://u:***@h/db: cannot open experiment 'x': boom"


@pytest.mark.slow
def test_disk_full_during_tune_is_one_line_and_the_rerun_closes_every_run(project: Path, tmp_path: Path) -> None:
    """``ulimit -f`` lets the new store be created, then stops it growing a few trials into the search."""
    from tests.conftest import write_params
    from tests.tune_fixtures import TINY_SPACE

    write_params(project, data={"max_samples": 300}, search_space=TINY_SPACE,
                 tune={"tuner": "random", "max_trials": 8, "max_epochs": 1, "initial_points": []})
    assert run_cli(["preprocess"], cwd=project).returncode == 0
    # the size of a new store, measured on a throwaway one: the limit leaves room for a few trials
    probe = tmp_path / "probe.db"
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.search_experiments()"], check=True,
                   capture_output=True, env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{probe}"})
    limit_kb = probe.stat().st_size // 1024 + 40
    db = project / "mlflow.db"
    env = {**os.environ, "PYTHONPATH": str(project), "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    full = subprocess.run(["bash", "-c", f'ulimit -f {limit_kb}; exec "{sys.executable}" -m pipeline tune'],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert full.returncode == 2, full.stderr[-3000:]
    assert "Traceback" not in full.stdout + full.stderr, full.stderr[-3000:]
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert error_lines(full.stderr) == [lines[-1]] and "disk full" in lines[-1] and "rerun" in lines[-1]
    with sqlite3.connect(db) as connection:
        finished = connection.execute("SELECT COUNT(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
    assert 0 < finished < 8  # it did stop mid-search

    # with room again, the rerun closes what the full disk left open and finishes the search
    rerun = run_cli(["tune"], cwd=project)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with sqlite3.connect(db) as connection:
        statuses = dict(connection.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        trials = {row[0] for row in connection.execute("SELECT name FROM runs WHERE status = 'FINISHED'")}
    assert set(statuses) <= {"FINISHED", "KILLED"}, statuses  # nothing RUNNING, no trial left FAILED
    assert {f"trial-{i}" for i in range(8)} <= trials


def test_disk_full_during_preprocess_is_one_line_and_keeps_the_previous_data(project: Path) -> None:
    """A real short write (``ulimit -f`` caps the child's file size): NumPy's errno-less OSError included."""
    assert run_cli(["preprocess"], project).returncode == 0
    meta = (project / "data/processed/meta.json").read_text()
    code = f'ulimit -f 100; exec "{sys.executable}" -m pipeline preprocess -S seed=7'
    result = subprocess.run(["bash", "-c", code], cwd=project, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(project)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and errors[0].startswith("error: data/processed/x_train.npy: No space left on device")
    assert (project / "data/processed/meta.json").read_text() == meta  # the previous split, whole
    assert sorted(p.name for p in (project / "data").iterdir() if p.name.startswith(".")) == []
