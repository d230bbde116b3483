"""No password from a tracking URI in anything the pipeline prints; credentials reach the server check.

Servers here listen on 127.0.0.1 only: a tiny recording HTTP server in a thread, and one real
``mlflow server`` process (its own process group, stopped by its pid).
"""

from __future__ import annotations

import base64
import http.server
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import TrackingError
from pipeline.tracking.redact import redact, redacted_output
from pipeline.tracking.store import check_reachable
from tests.conftest import REPO, run_cli

PASSWORD = "S3cretPW"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://admin:S3cretPW@host:5000", "http://admin:***@host:5000"),
        ("postgresql://user:S3cretPW@db.example/mlflow", "postgresql://user:***@db.example/mlflow"),
        ("postgresql+psycopg://u:p@ss@h:5432/db?sslmode=require", "postgresql+psycopg://u:***@h:5432/db?sslmode=require"),
        ("store 'https://a:b@c/x' and http://d:e@f", "store 'https://a:***@c/x' and http://d:***@f"),
        ("postgresql://h/db?user=x&password=S3cretPW&x=1", "postgresql://h/db?user=x&password=***&x=1"),
        ("s3://bucket/key?X-Amz-Signature=abcdef&X-Amz-Date=1", "s3://bucket/key?X-Amz-Signature=***&X-Amz-Date=1"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://127.0.0.1:5000/#/experiments/1/runs/abc", "http://127.0.0.1:5000/#/experiments/1/runs/abc"),
        ("http://host:5000/path?x=a:b@c", "http://host:5000/path?x=a:b@c"),
        ("mail admin@example.com", "mail admin@example.com"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_secret_environment_values_are_masked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2hunter2")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "ab")  # too short to mask safely: left alone
    assert redact("auth with hunter2hunter2 failed (ab)") == "auth with *** failed (ab)"


def test_redacted_output_covers_print_streams_and_log_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("test_secrets.own_handler")
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)  # holds its own stream: only the filter can reach it
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with redacted_output(loggers=("test_secrets.own_handler",)):
            print(f"tracking at http://admin:{PASSWORD}@h:1")
            sys.stdout.write(f"🏃 View run x at: http://admin:{PASSWORD}@h:1/#/experiments/1/runs/2\n")
            print(f"error: http://admin:{PASSWORD}@h:1", file=sys.stderr)
            logger.warning("retrying %s", f"http://admin:{PASSWORD}@h:1/api")
        logger.warning("after: %s", "untouched")
    finally:
        logger.removeHandler(handler)
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err + buffer.getvalue()
    assert "View run x at: http://admin:***@h:1/#/experiments/1/runs/2" in captured.out
    assert buffer.getvalue() == "retrying http://admin:***@h:1/api\nafter: untouched\n"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers /health with ``status`` and records the Authorization header of each request."""

    status = 200
    api_status = 404  # every other path
    seen: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(type(self).status if self.path == "/health" else type(self).api_status)
        self.end_headers()
        self.wfile.write(b"OK")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[int, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"seen": [], "status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_reachability_check_sends_credentials_from_the_uri_or_the_environment(
        recorder: tuple[int, type[Recorder]], monkeypatch: pytest.MonkeyPatch) -> None:
    port, handler = recorder
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    check_reachable(f"http://admin:{PASSWORD}@127.0.0.1:{port}")  # was: "admin:S3cretPW@127.0.0.1" as host
    check_reachable(f"http://ad%40min:pa%3Ass@127.0.0.1:{port}/")
    check_reachable(f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-123")
    check_reachable(f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "envuser")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "envpw")
    check_reachable(f"http://admin:{PASSWORD}@127.0.0.1:{port}")  # MLflow prefers the environment too
    assert handler.seen == [basic("admin", PASSWORD), basic("ad@min", "pa:ss"), None, "Bearer tok-123",
                            basic("envuser", "envpw")]


def test_refused_credentials_and_a_down_server_are_one_line_without_the_password(
        recorder: tuple[int, type[Recorder]]) -> None:
    port, handler = recorder
    handler.status = 401
    with pytest.raises(TrackingError) as caught:
        check_reachable(f"http://admin:{PASSWORD}@127.0.0.1:{port}")
    assert caught.value.lines[0].startswith(f"MLflow tracking server http://admin:***@127.0.0.1:{port} refused the "
                                            "credentials (HTTP 401)")
    with pytest.raises(TrackingError) as caught:
        check_reachable(f"http://admin:{PASSWORD}@127.0.0.1:notaport")
    assert caught.value.lines == ["tracking URI http://admin:***@127.0.0.1:notaport: the port is not a number "
                                  "from 1 to 65535"]


def test_a_server_that_lets_health_through_but_refuses_the_api_is_one_line_within_seconds(
        project: Path, recorder: tuple[int, type[Recorder]]) -> None:
    # as MLflow's basic-auth app does: /health answers anyone, the first API call gets 401
    port, handler = recorder
    handler.api_status = 401
    started = time.monotonic()
    result = run_cli(["tune"], cwd=project, env={"MLFLOW_TRACKING_URI": f"http://admin:{PASSWORD}@127.0.0.1:{port}"})
    took = time.monotonic() - started
    assert result.returncode == 2 and PASSWORD not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: MLflow tracking server http://admin:***@127.0.0.1:{port} refused the credentials "
                      "(HTTP 401); check the user:password in the URI or MLFLOW_TRACKING_USERNAME / "
                      "MLFLOW_TRACKING_PASSWORD"], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert took < 30  # the report came from the first refused call (seconds, most of them Python start-up), not
    # after the retries for a dead server (mlflow.outage_seconds)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_error_for_an_unreachable_server_hides_the_password(project: Path) -> None:
    uri = f"http://admin:{PASSWORD}@127.0.0.1:{free_port()}"
    result = run_cli(["predict", "--model", "models:/m@champion", "img.png"], cwd=project,
                     env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 2 and PASSWORD not in result.stdout + result.stderr
    assert result.stderr.startswith("error: MLflow tracking server http://admin:***@127.0.0.1:"), result.stderr
    assert "unreachable" in result.stderr
    shown = run_cli(["validate", "-S", f"mlflow.tracking_uri={uri}"], cwd=project)
    assert shown.returncode == 0 and PASSWORD not in shown.stdout and "admin:***@127.0.0.1" in shown.stdout


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``mlflow server`` on 127.0.0.1 (no basic-auth app here: Flask-WTF is not installed)."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    log = open(folder / "server.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no huey worker processes
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
         str(folder / "artifacts")],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start:\n" + (folder / "server.log").read_text()[-3000:])
                time.sleep(0.3)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own group: the server and the uvicorn it started
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


@pytest.mark.slow
def test_a_uri_with_a_password_is_accepted_by_a_live_server(mlflow_server: int, project: Path) -> None:
    uri = f"http://admin:{PASSWORD}@127.0.0.1:{mlflow_server}"
    result = run_cli(["rollback"], cwd=project, env={"MLFLOW_TRACKING_URI": uri})
    output = result.stdout + result.stderr
    assert PASSWORD not in output and "unreachable" not in output and "cannot open experiment" not in output, output
    assert result.returncode == 2 and result.stderr.splitlines()[-1].startswith("error: "), output  # no model yet


VIEW_RUN = """
import sys, mlflow
from pipeline.tracking.redact import redacted_output
with redacted_output():
    mlflow.set_tracking_uri(sys.argv[1])
    mlflow.set_experiment("secrets")
    with mlflow.start_run(run_name="r"):
        mlflow.log_param("uri", "kept out of prints")
"""


@pytest.mark.slow
def test_mlflows_own_view_run_lines_are_redacted(mlflow_server: int, tmp_path: Path) -> None:
    uri = f"http://admin:{PASSWORD}@127.0.0.1:{mlflow_server}"
    result = subprocess.run([sys.executable, "-c", VIEW_RUN, uri], cwd=tmp_path, capture_output=True, text=True,
                            timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"View run r at: http://admin:***@127.0.0.1:{mlflow_server}/#/experiments/" in result.stdout, result.stdout
    assert "View experiment at: http://admin:***@" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
