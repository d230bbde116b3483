"""Attach the report to the search's MLflow parent run, under the artifact folder ``report/``."""

from __future__ import annotations

import warnings
from pathlib import Path

from pipeline.errors import TrackingError


def log_report(params, run_id: str | None, report_dir: str | Path) -> bool:  # noqa: ANN001 - Params
    """Log every file of ``report_dir``; warn and return False when there is no such run."""
    if not run_id:
        warnings.warn("best_hparams.json names no search_run_id: the report is not logged to MLflow", stacklevel=2)
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline.tracking.store import configure

    try:
        configure(params)
        client = MlflowClient()
        client.get_run(run_id)
    except (MlflowException, TrackingError) as error:
        message = error.lines[0] if isinstance(error, TrackingError) else getattr(error, "message", error)
        warnings.warn(f"MLflow search run {run_id} not found ({message}): the report is not logged", stacklevel=2)
        return False
    client.log_artifacts(run_id, str(report_dir), "report")
    return True
