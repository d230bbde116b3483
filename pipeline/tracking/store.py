"""Which MLflow store to use, and a fail-fast check that it answers.

Default: ``sqlite:///<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``, both
absolute, so that DVC's queued experiments (run in copies under
``<repo>/.dvc/tmp/exps/``) still log to the one store the user opens with ``mlflow ui``.
``MLFLOW_TRACKING_URI`` overrides ``mlflow.tracking_uri`` which overrides the default.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import TrackingError
from pipeline.paths import repo_root

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def shared_root(start: Path | None = None) -> Path:
    """The user's repository, also from inside a DVC temporary experiment copy."""
    root = repo_root(start)
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def resolve_tracking_uri(configured: str | None = None, start: Path | None = None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{shared_root(start) / DB_NAME}"


def default_artifact_location(tracking_uri: str, start: Path | None = None) -> str | None:
    """Absolute artifact root for local stores (MLflow would use ./mlruns of the cwd)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None  # the server decides (mlflow server --artifacts-destination)
    return (shared_root(start) / ARTIFACTS_DIR).as_uri()


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after an hour of training, when a tracking server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - user's own server
            if response.status >= 400:
                raise TrackingError(f"MLflow tracking server {tracking_uri} answered {response.status} on /health")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {tracking_uri} is unreachable ({reason}); start it "
            "(`mlflow server ...`) or unset MLFLOW_TRACKING_URI / mlflow.tracking_uri to use the local store"
        ) from None


def configure(params) -> str:  # noqa: ANN001 - pipeline.config.Params
    """Point mlflow at the store and experiment of ``params``; return the tracking URI."""
    import mlflow

    uri = resolve_tracking_uri(params.mlflow.tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    name = params.mlflow.experiment
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            mlflow.create_experiment(name, artifact_location=default_artifact_location(uri))
        mlflow.set_experiment(name)
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any store failure becomes one clear line
        raise TrackingError(f"MLflow store {uri}: cannot open experiment {name!r}: {error}") from None
    return uri
