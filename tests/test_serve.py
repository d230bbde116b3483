"""The registered model behind `mlflow models serve`: raw digits pixels in, evaluate's accuracy out."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import write_params
from test_registry_model import NAME, prepare_data, train_and_evaluate

from pipeline.cli import main
from pipeline.data.normalize import raw_from_processed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(1.0)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s")


@pytest.mark.slow
def test_served_model_takes_raw_pixels(project: Path, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    prepare_data(project)
    write_params(project, register={"min_accuracy": 0.0, "require_beat_baseline": False})
    metrics = train_and_evaluate(project)
    assert main(["register"]) == 0

    meta = json.loads((project / "data/processed/meta.json").read_text())
    x_test = np.load(project / "data/processed/x_test.npy")
    y_test = np.load(project / "data/processed/y_test.npy")
    # The pixels a user has: integers 0..16, the very images of scikit-learn's digits.
    pixels = np.rint(raw_from_processed(x_test, meta["normalization"])).astype(int)
    known = {image.astype(int).tobytes() for image in load_digits().images}
    assert all(image[..., 0].tobytes() in known for image in pixels)

    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below, after the server stops
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}@challenger",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=project, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/ping", server)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": pixels.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    finally:
        # The server and its uvicorn workers share the session this test started; stop that group only.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert predictions.shape == (len(y_test), 10)
    accuracy = float(np.mean(np.argmax(predictions, axis=1) == y_test))
    assert accuracy == pytest.approx(metrics["accuracy"], abs=1e-9)
