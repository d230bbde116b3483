"""tune.trials_per_process: the search continues in a fresh process (bounded memory), nothing lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE


@pytest.mark.slow
# with a budget, the fresh process spends what is left of it, going by the trials before it (not spent here)
@pytest.mark.parametrize("time_budget", [None, "1h"])
def test_search_restarts_its_process_and_resumes(project: Path, time_budget: str | None) -> None:
    write_params(project, data={"max_samples": 150}, search_space=TINY_SPACE,
                 # resume: false starts this search over once; the fresh processes must still continue it
                 tune={"tuner": "hyperband", "max_epochs": 3, "factor": 3, "trials_per_process": 3, "resume": False,
                       "time_budget": time_budget},
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
    assert parents[0].data.metrics.get("stopped_by_budget", 0.0) == 0.0
    if time_budget:
        assert 0 < parents[0].data.metrics["time_spent_s"] < 3600  # one budget over both processes
    assert sorted(r.data.tags["trial_id"] for r in children) == [f"{i:04d}" for i in range(6)]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}


@pytest.mark.parametrize(("done_here", "per_process", "trials_left", "due"), [
    (19, 20, 10, False),   # not yet
    (20, 20, 6, True),     # more than a quarter of a process's trials left: a fresh process
    (20, 20, 5, False),    # a quarter or less: this process finishes the search (a digits search: 24 trials)
    (20, 20, 0, False),    # nothing left
    (20, 20, None, True),  # not known (a distributed worker)
    (3, 3, 1, True),       # small processes: a quarter of 3 is 0 trials
    (50, 0, 100, False),   # 0: never
])
def test_a_process_finishes_a_search_that_ends_within_a_quarter_of_its_trials(
        done_here: int, per_process: int, trials_left: int | None, due: bool) -> None:
    from pipeline.tuning.tuners import recycle_due

    assert recycle_due(done_here, per_process, trials_left) is due
