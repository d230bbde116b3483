"""Real DVC: `dvc repro evaluate` runs validate, preprocess, tune, train and evaluate from the repository's
own dvc.yaml (tiny params), writes each stage's outputs, links them to the MLflow runs, and a second repro
runs nothing. (It also covers `dvc repro tune`: one DVC project for both, as each costs a search.)"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_params
from tests.tune_fixtures import TINY_SPACE, child_runs

STAGES = ("validate", "preprocess", "tune", "train", "evaluate")
# a flatten head at a fixed learning rate: the 8x8 digits learned in a few epochs (~0.9 validation accuracy)
SPACE = {**TINY_SPACE, "head": "flatten", "batch_size": 32, "learning_rate": 0.01}


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(project), "DVC_NO_ANALYTICS": "1"})


@pytest.mark.slow
def test_dvc_repro_evaluate_trains_and_evaluates_through_the_real_dvc_yaml(dvc_project: Path) -> None:
    from mlflow import MlflowClient

    write_params(dvc_project, data={"max_samples": 300}, search_space=SPACE,
                 tune={"tuner": "random", "max_trials": 1, "max_epochs": 2, "initial_points": []},
                 train={"epochs": 6, "seeds": 1, "configurations": 1}, mlflow={"experiment": "dvc-e2e"})
    first = dvc(dvc_project, "repro", "evaluate")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output[-4000:]
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, output[-4000:]
    assert "Running stage 'ablate'" not in first.stdout and "Running stage 'register'" not in first.stdout

    lock = yaml.safe_load((dvc_project / "dvc.lock").read_text())["stages"]
    assert set(STAGES) <= set(lock)
    assert {o["path"] for o in lock["train"]["outs"]} >= {"models/model.keras", "results/train/run.json"}
    assert "models/model.keras" in {d["path"] for d in lock["evaluate"]["deps"]}

    tune = dvc_project / "results/tune"  # the search's outputs, its runs and its KerasTuner state
    for name in ("best_hparams.json", "trials.csv", "history.csv", "summary.png", "metrics.json"):
        assert (tune / name).is_file(), name
    best = json.loads((tune / "best_hparams.json").read_text())
    rows = list(csv.DictReader((tune / "trials.csv").open()))
    assert best["trial_id"] in {r["trial_id"] for r in rows}
    assert len(child_runs(os.environ["MLFLOW_TRACKING_URI"], "dvc-e2e")) == len(rows)
    assert any(p.name.startswith("search-") for p in (dvc_project / ".tuner").iterdir())

    run = json.loads((dvc_project / "results/train/run.json").read_text())
    metrics = json.loads((dvc_project / "results/evaluate/metrics.json").read_text())
    model = dvc_project / "models/model.keras"
    assert metrics["mlflow_run_id"] == run["run_id"]
    assert metrics["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert metrics["accuracy"] > 0.5  # 10 digits: chance is 0.1; a model that did not train stays near it
    assert (dvc_project / "results/evaluate/confusion.png").stat().st_size > 0
    confusion = (dvc_project / "results/evaluate/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) - 1 == json.loads(
        (dvc_project / "data/processed/meta.json").read_text())["sizes"]["test"]
    logged = MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run["run_id"]).data.metrics
    assert logged["test_accuracy"] == pytest.approx(metrics["accuracy"])

    again = dvc(dvc_project, "repro", "evaluate")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage" not in again.stdout, again.stdout
