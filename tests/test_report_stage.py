"""The ``report`` stage as DVC runs it, and its MLflow artifacts on the search's parent run."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from pipeline.config import load_params

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def _write_tune_outputs(root: Path, search_run_id: str | None) -> None:
    from test_report_build import synthetic_trials

    params = load_params(root / "params.yaml")
    trials, history = synthetic_trials(params, n=12, fail_every=4)
    tune = root / "results" / "tune"
    tune.mkdir(parents=True)
    trials.to_csv(tune / "trials.csv", index=False)
    history.to_csv(tune / "history.csv", index=False)
    (tune / "best_hparams.json").write_text(json.dumps({"trial_id": "0000", "search_run_id": search_run_id}))


def test_stage_writes_report_and_logs_it_to_the_search_run(project, capsys):
    from mlflow import MlflowClient

    from pipeline.stages import report as stage
    from pipeline.tracking.store import configure

    params = load_params("params.yaml")
    configure(params)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    run_id = client.create_run(experiment.experiment_id, run_name="search-hyperband").info.run_id
    _write_tune_outputs(project, run_id)

    assert stage.run(params, None) == 0

    out = project / "results" / "report"
    assert {"report.md", "report.html", "summary.json"} <= {p.name for p in out.iterdir()}
    assert "report: 12 trials (9 finished, 3 failed)" in capsys.readouterr().out
    assert "against untuned baselines" not in (out / "report.md").read_text()  # no evaluate yet: no section

    # after evaluate, the final model stands next to the scikit-learn baselines
    evaluate = project / "results" / "evaluate" / "metrics.json"
    evaluate.parent.mkdir(parents=True, exist_ok=True)
    evaluate.write_text(json.dumps({"accuracy": 0.9963, "best_baseline": "svc", "baseline_margin": 0.0111,
                                    "baselines": {"svc": 0.9852},
                                    "baselines_skipped": {"logistic_regression": "too slow"}}))
    assert stage.run(params, None) == 0
    text = (out / "report.md").read_text()
    assert "against untuned baselines" in text and "0.9852" in text and "+0.0111" in text
    assert "skipped: too slow" in text
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "report")}
    assert {"report.md", "report.html", "summary.json", "figures"} <= logged
    figures = {Path(a.path).name for a in client.list_artifacts(run_id, "report/figures")}
    assert "importance.png" in figures


def test_stage_without_search_run_warns_and_still_writes(project):
    from pipeline.stages import report as stage

    _write_tune_outputs(project, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert stage.run(load_params("params.yaml"), None) == 0
    assert any("not logged to MLflow" in str(w.message) for w in caught)
    assert (project / "results" / "report" / "report.html").is_file()


def test_unknown_search_run_warns(project):
    from pipeline.tracking.report_artifacts import log_report

    (project / "r").mkdir()
    with pytest.warns(UserWarning, match="not found"):
        assert log_report(load_params("params.yaml"), "0123456789abcdef0123456789abcdef", project / "r") is False


def test_cli_reports_missing_trials_as_one_line(project):
    from pipeline.cli import main

    assert main(["report"]) == 2
