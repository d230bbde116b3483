"""tune.trials_per_process: the search continues in a fresh process (bounded memory), nothing lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE


@pytest.mark.slow
def test_search_restarts_its_process_and_resumes(project: Path) -> None:
    write_params(project, data={"max_samples": 150}, search_space=TINY_SPACE,
                 # resume: false starts this search over once; the fresh processes must still continue it
                 tune={"tuner": "hyperband", "max_epochs": 3, "factor": 3, "trials_per_process": 3, "resume": False},
                 mlflow={"experiment": "recycle"})
    assert run_cli(["preprocess"], cwd=project).returncode == 0
    result = run_cli(["tune"], cwd=project, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    # 6 trials, 3 per process: a fresh process after trial 3, none after the last one
    assert result.stdout.count("continuing in a fresh one") == 1, result.stdout

    metrics = json.loads((project / "results/tune/metrics.json").read_text())
    assert {k: metrics[k] for k in ("best_objective", "trials", "failed", "wall_seconds")} == {
        "best_objective": metrics["best_objective"], "trials": 6, "failed": 0, "wall_seconds": metrics["wall_seconds"]}
    assert metrics["search_gain"] is None and metrics["best_initial_score"] is None  # hyperband: no initial point

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["recycle"], output_format="list")
    parents = [r for r in runs if r.info.run_name.startswith("search-")]
    children = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["trial_id"] for r in children) == [f"{i:04d}" for i in range(6)]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
