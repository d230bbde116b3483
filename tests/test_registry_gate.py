"""register's gate for alias challenger, and its refusal of test metrics that belong to another model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_params
from test_registry_model import NAME, WEAK_LR, prepare_data, train_and_evaluate

from pipeline.cli import main
from pipeline.stages.register import check_gate

BASELINES = {"logistic_regression": 0.96, "svc": 0.98}


@pytest.mark.parametrize(("accuracy", "baselines", "min_accuracy", "require", "passed", "noted"), [
    (0.99, BASELINES, 0.5, True, True, False),
    (0.98, BASELINES, 0.5, True, False, False),   # a tie with the best baseline does not beat it
    (0.97, BASELINES, 0.5, False, True, False),   # baselines not required
    (0.40, BASELINES, 0.5, False, False, False),  # below min_accuracy
    (0.90, None, 0.5, True, True, True),          # evaluate wrote no baselines: that part is skipped, said so
])
def test_check_gate(accuracy, baselines, min_accuracy, require, passed, noted) -> None:
    metrics = {"accuracy": accuracy, **({"baselines": baselines} if baselines else {})}
    gate = check_gate(metrics, min_accuracy, require)
    assert gate.passed is passed and gate.reason
    assert (gate.note is not None) is noted
    if not passed and require and baselines and accuracy >= min_accuracy:
        assert "svc" in gate.reason


def write_metrics(project: Path, **changes: object) -> None:
    path = project / "results/evaluate/metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_failing_model_is_registered_without_alias(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    prepare_data(project)
    write_params(project, register={"min_accuracy": 0.5, "require_beat_baseline": True})  # the defaults
    train_and_evaluate(project, WEAK_LR, epochs=1)
    write_metrics(project, accuracy=0.9, baselines=BASELINES)  # a good model, but the baselines are better
    capsys.readouterr()
    assert main(["register"]) == 0
    out = capsys.readouterr().out
    gate_lines = [line for line in out.splitlines() if line.startswith("gate failed:")]
    assert len(gate_lines) == 1 and "does not beat the best baseline svc (0.9800" in gate_lines[0]
    assert "registered without an alias" in gate_lines[0]
    client = MlflowClient()
    tags = client.get_model_version(NAME, "1").tags
    assert tags["gate"] == "failed" and "svc" in tags["gate_reason"]
    assert not client.get_registered_model(NAME).aliases
    written = json.loads((project / "results/register/model.json").read_text())
    assert written["gate"] == "failed" and written["alias"] is None and written["version"] == "1"

    # without the baseline requirement the same version passes and becomes challenger
    assert main(["register", "-S", "register.require_beat_baseline=false"]) == 0
    assert "alias challenger -> digits-cnn version 1" in capsys.readouterr().out
    assert client.get_model_version(NAME, "1").tags["gate"] == "passed"


def test_register_refuses_metrics_of_another_model(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(project)
    train_and_evaluate(project, WEAK_LR, epochs=1)
    metrics_file = project / "results/evaluate/metrics.json"
    good = metrics_file.read_text()
    cases = {"mlflow_run_id": "0123456789abcdef0123456789abcdef", "model_sha256": "f" * 64}
    for key, value in cases.items():
        metrics_file.write_text(good)
        write_metrics(project, **{key: value})
        capsys.readouterr()
        assert main(["register"]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, errors
        assert errors[0].startswith("error: results/evaluate/metrics.json belongs to")
        assert errors[0].endswith("run `python -m pipeline evaluate` (or `dvc repro`) first")
    metrics_file.write_text(json.dumps({"accuracy": 0.9}))  # from before evaluate recorded its model
    assert main(["register"]) == 2
    assert "does not say which model it evaluated" in capsys.readouterr().err
