"""How long a dead tracking server holds a stage: ``mlflow.outage_seconds`` bounds MLflow's HTTP retries."""

from __future__ import annotations

import os

import pytest

from pipeline.tracking.store import _RETRY_ENV, bound_http_retries


@pytest.fixture
def no_retry_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _RETRY_ENV:  # set first, so that what bound_http_retries sets is undone after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _worst_case_seconds() -> float:
    """Every attempt timing out, with MLflow's backoff (factor x 2^k) between them (jitter aside)."""
    retries = int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    factor = int(os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    timeout = int(os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"])
    return (retries + 1) * timeout + sum(factor * 2**k for k in range(retries))


@pytest.mark.parametrize("outage_seconds", [30, 60, 600])
def test_a_dead_server_fails_a_call_within_about_outage_seconds(no_retry_settings: None, outage_seconds: int) -> None:
    bound_http_retries(outage_seconds)
    assert int(os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]) >= 1  # a blip is retried, not fatal
    assert outage_seconds * 0.75 <= _worst_case_seconds() <= outage_seconds + 2


def test_a_users_own_retry_settings_win(no_retry_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    bound_http_retries(60)
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "11"  # the rest still bounded
