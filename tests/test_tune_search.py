"""The tune stage end to end on tiny data: child runs per trial, NaN trials, interrupt and resume."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from tests.tune_fixtures import child_runs, faulty_hypermodel, hypermodel, parent_runs, tiny_data, tiny_params

pytestmark = pytest.mark.slow

SPACE_KEYS = ("architecture", "init", "optimizer", "learning_rate", "lr_schedule", "batch_size")


def _tune(params, model, out: Path):
    from pipeline.tracking.store import configure
    from pipeline.tuning.session import tune

    uri = configure(params)
    return tune(params, model, tiny_data(), "fp-test", tracking_uri=uri,
                hp_names=list(type(params.search_space).model_fields), out_dir=out)


def _oracle_trials(params) -> dict[str, str]:
    folders = [p for p in Path(params.tune.directory).iterdir() if p.name.startswith("search-")]
    assert len(folders) == 1
    return {p.parent.name.removeprefix("trial_"): json.loads(p.read_text())["status"]
            for p in folders[0].glob("trial_*/trial.json")}


def test_hyperband_logs_one_child_run_per_trial(tmp_path: Path, store: str) -> None:
    from mlflow import MlflowClient

    from pipeline.model.precision import resolve_precision

    params = tiny_params(tmp_path)
    best = _tune(params, hypermodel(params), tmp_path / "out")
    trials = _oracle_trials(params)
    runs = child_runs(store)
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(trials)  # one run per KerasTuner trial
    parent = parent_runs(store)
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    parent = parent[0]
    assert parent.info.run_name.startswith("search-hyperband-")
    assert parent.data.tags["data_fingerprint"] == "fp-test"
    assert parent.data.params["tune.max_epochs"] == "3"
    assert parent.data.params["search_space.optimizer.choices"] == '["adam", "rmsprop"]'
    # the setting and what this machine made of it (float32 on a CPU, mixed_float16 on a tensor-core GPU)
    assert parent.data.params["precision"] == "auto"
    assert parent.data.params["precision_policy"] == resolve_precision("auto") in ("float32", "mixed_float16")
    assert parent.data.tags["best_trial_id"] == best["trial_id"]
    assert parent.data.metrics["completed"] == len(trials)
    assert parent.inputs.dataset_inputs[0].dataset.digest == "fp-test"

    client = MlflowClient(store)
    continued = 0
    for run in runs:
        tags, data = run.data.tags, run.data
        assert run.info.run_name == f"trial-{tags['trial_id']}"
        assert run.info.status == "FINISHED"
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(type(params.search_space).model_fields) == set(data.params)  # same keys every trial
        for key in ("bracket", "round", "initial_epoch", "target_epochs", "source"):
            assert key in tags
        for key in ("score", "epochs_trained", "seconds_per_epoch", "params_count"):
            assert key in data.metrics
        steps = {m: [h.step for h in client.get_metric_history(run.info.run_id, m)]
                 for m in ("loss", "accuracy", "val_loss", "val_accuracy", "lr")}
        first = int(tags["initial_epoch"])
        assert all(s == list(range(first, first + len(s))) and s for s in steps.values()), steps
        if "continued_from" in tags:
            continued += 1
            assert first > 0 and steps["val_accuracy"][0] == first
    assert continued >= 1

    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == len(trials)
    assert list(rows[0])[:23] == ["trial_id", "status", "score", "objective", "bracket", "round", "continued_from",
                                  "initial_epoch", "target_epochs", "budget_cut_at", "epochs_trained", "best_epoch",
                                  "seconds", "seconds_per_epoch", "params_count", "run_id", "source", "train_rows",
                                  "accuracy", "val_accuracy", "loss", "val_loss", "trial_seconds"]
    # Hyperband draws every configuration uniformly and, under epoch fidelity, trains on every row
    assert {r["source"] for r in rows} == {"uniform"} and len({r["train_rows"] for r in rows}) == 1
    assert all(f"hp.{k}" in rows[0] for k in SPACE_KEYS)
    history = list(csv.DictReader((out / "history.csv").open()))
    assert list(history[0]) == ["trial_id", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trials"] == len(trials) and metrics["failed"] == 0
    assert set(best) >= {"trial_id", "objective", "score", "values", "epochs", "tuner", "search_run_id",
                         "data_fingerprint", "search_hash"}
    assert best["search_run_id"] == parent.info.run_id and set(best["values"]) == set(data.params)
    assert (out / "summary.png").stat().st_size > 0

    # the same params again: the finished search is reused, nothing is logged twice
    _tune(params, hypermodel(params), tmp_path / "out")
    assert len(child_runs(store)) == len(runs) and len(parent_runs(store)) == 1


def test_nan_trial_fails_and_search_finishes(tmp_path: Path, store: str) -> None:
    params = tiny_params(tmp_path)
    _tune(params, faulty_hypermodel(params, nan_fit=2), tmp_path / "out")
    statuses = Counter(r.info.status for r in child_runs(store))
    assert statuses["FAILED"] == 1 and statuses["FINISHED"] == len(_oracle_trials(params)) - 1
    failed = next(r for r in child_runs(store) if r.info.status == "FAILED")
    assert "NaN" in failed.data.tags["error"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["failed"] == 1
    assert parent_runs(store)[0].info.status == "FINISHED"


def test_interrupt_then_resume_logs_each_trial_once(tmp_path: Path, store: str) -> None:
    params = tiny_params(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _tune(params, faulty_hypermodel(params, interrupt_fit=3), tmp_path / "out")
    runs = child_runs(store)
    assert Counter(r.info.status for r in runs) == {"FINISHED": 2, "KILLED": 1}
    killed = next(r for r in runs if r.info.status == "KILLED")
    assert parent_runs(store)[0].info.status == "KILLED"

    _tune(params, hypermodel(params), tmp_path / "out")
    runs = child_runs(store)
    trials = _oracle_trials(params)
    finished = Counter(r.data.tags["trial_id"] for r in runs if r.info.status == "FINISHED")
    assert set(finished) == set(trials) and max(finished.values()) == 1  # all present, none twice
    assert [r.info.status for r in runs if r.info.run_id == killed.info.run_id] == ["KILLED"]
    assert len(parent_runs(store)) == 1 and parent_runs(store)[0].info.status == "FINISHED"
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert sorted(r["trial_id"] for r in rows) == sorted(trials)


def test_hard_kill_leaves_no_running_runs_after_resume(tmp_path: Path, store: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGKILL gives no chance to end the trial's run: the resumed search marks it KILLED."""
    from pipeline.tuning.tuners import TrackedTunerMixin

    params = tiny_params(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(TrackedTunerMixin, "abort_active_trial", lambda self, *a, **k: None)
        with pytest.raises(KeyboardInterrupt):
            _tune(params, faulty_hypermodel(params, interrupt_fit=2), tmp_path / "out")
    assert Counter(r.info.status for r in child_runs(store))["RUNNING"] == 1
    _tune(params, hypermodel(params), tmp_path / "out")
    statuses = Counter(r.info.status for r in child_runs(store))
    assert statuses["RUNNING"] == 0 and statuses["KILLED"] == 1


def test_resume_false_starts_a_new_search(tmp_path: Path, store: str) -> None:
    params = tiny_params(tmp_path, tuner="random", max_trials=2, max_epochs=1)
    _tune(params, hypermodel(params), tmp_path / "out")
    again = tiny_params(tmp_path, tuner="random", max_trials=2, max_epochs=1, resume=False)
    _tune(again, hypermodel(again), tmp_path / "out")
    assert len(parent_runs(store)) == 2 and len(child_runs(store)) == 4
