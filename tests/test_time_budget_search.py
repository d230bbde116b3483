"""tune.time_budget and train.time_budget end to end on tiny data: real KerasTuner, real SQLite MLflow store.

The budget stops a search on time (the running trial cut at an epoch end, or no new trial started),
the search run ends FINISHED with what was spent, a rerun with a fresh budget continues without
running a finished trial again, and train stops its models on time.
"""

from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import pytest

from tests.tune_fixtures import child_runs, hypermodel, parent_runs, tiny_data, tiny_params

pytestmark = pytest.mark.slow

# "About one epoch" past the budget, generously: a tiny epoch takes ~0.05 s, but a trial's first one
# builds and traces the model (~1 s idle, up to ~9 s measured on a loaded 2-core machine). A budget
# ignored would still fail: 1000 epochs take ~50 s, and the tests check where the trial was cut.
SLACK_S = 12.0


def _tune(params, out: Path) -> None:
    """Run the search as the tune stage does (the budget counts from the search loop's start)."""
    from pipeline.tracking.store import configure
    from pipeline.tuning.session import tune

    uri = configure(params)
    tune(params, hypermodel(params), tiny_data(), "fp-test", tracking_uri=uri,
         hp_names=list(type(params.search_space).model_fields), out_dir=out)


def _trials(params) -> dict[str, dict]:
    from pipeline.tuning.records import TrialRecord

    """trial id -> (status, epochs the trial trained) as the tuner directory has them."""
    (folder,) = [p for p in Path(params.tune.directory).iterdir() if p.name.startswith("search-")]
    out = {}
    for path in folder.glob("trial_*/trial.json"):
        record = TrialRecord.load(path.parent)
        out[path.parent.name.removeprefix("trial_")] = {"status": json.loads(path.read_text())["status"],
                                                        "epochs": record.epochs_trained if record else None,
                                                        "cut_at": record.budget_cut_at if record else None}
    return out


def test_the_budget_cuts_the_running_trial_and_a_rerun_continues_the_search(
        tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    # trials of 1000 epochs (~50 s each), no early stopping: only the budget can end the first one early
    params = tiny_params(tmp_path, tuner="random", max_trials=4, max_epochs=1000, early_stopping_patience=1000,
                         time_budget="2s")
    _tune(params, tmp_path / "out")
    out = capsys.readouterr().out
    trials = _trials(params)
    assert list(trials.values())[0]["status"] == "COMPLETED" and len(trials) == 1, trials
    (first_id,) = trials
    cut_at = trials[first_id]["epochs"]
    assert 1 <= cut_at < 1000  # ended at an epoch end, scored on what it reached
    assert trials[first_id]["cut_at"] == cut_at  # recorded as cut: the search gain does not count it as 1000 epochs
    (row,) = csv.DictReader((tmp_path / "out/trials.csv").open())
    assert row["budget_cut_at"] == str(cut_at) and row["target_epochs"] == "1000"
    assert row["source"] == "uniform"  # random search: every configuration a uniform draw (the report's scope)
    (parent,) = parent_runs(store)
    metrics = parent.data.metrics
    assert parent.info.status == "FINISHED"
    assert metrics["stopped_by_budget"] == 1.0 and metrics["time_budget_s"] == 2.0
    # within the budget or about one epoch past it: an epoch that would end past it is not started
    # (then the budget is closed ahead of the clock), one that ran slower than the one before is finished
    assert 1.0 <= metrics["time_spent_s"] <= 2.0 + SLACK_S
    assert metrics["completed"] == 1
    assert "(tune.time_budget) spent after 0:" in out, out
    assert re.search(rf"search stopped with 1 of ~4 trials done \(trial {first_id} stopped at epoch {cut_at} of 1000"
                     r"(, another epoch would end past the budget)?\); rerun with tune.resume: true", out), out
    assert "budget left" in out  # the progress line counts down the budget
    assert json.loads((tmp_path / "out/best_hparams.json").read_text())["trial_id"] == first_id

    # A fresh budget: the same search (same hash, same parent run) goes on with a new trial
    _tune(tiny_params(tmp_path, tuner="random", max_trials=4, max_epochs=1000, early_stopping_patience=1000,
                             time_budget=2), tmp_path / "out")
    trials_after = _trials(params)
    assert len(trials_after) == 2 and all(t["status"] == "COMPLETED" for t in trials_after.values())
    assert trials_after[first_id] == trials[first_id]  # not trained again
    runs = child_runs(store)
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(trials_after)  # one run per trial, no rerun
    assert all(r.info.status == "FINISHED" for r in runs)
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.metrics["completed"] == 2
    assert parent.data.metrics["stopped_by_budget"] == 1.0 and parent.data.metrics["time_spent_s"] <= 2.0 + SLACK_S


def test_no_trial_starts_once_the_budget_is_spent(tmp_path: Path, store: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # one-epoch trials: the budget never cuts one, it stops the loop before the next
    params = tiny_params(tmp_path, tuner="random", max_trials=40, max_epochs=1, time_budget=1.5)
    _tune(params, tmp_path / "out")
    out = capsys.readouterr().out
    trials = _trials(params)
    done = [t for t in trials.values() if t["status"] == "COMPLETED"]
    # every trial completed, but for one handed out and priced past what was left (not started)
    assert 1 <= len(done) < 40 and len(trials) - len(done) <= 1, trials
    (parent,) = parent_runs(store)
    metrics = parent.data.metrics
    assert parent.info.status == "FINISHED" and metrics["stopped_by_budget"] == 1.0
    # spent, or closed ahead of the clock: what was left would not have held the shortest trial so far
    # (asked before the oracle hands a trial out) or the trial handed out (priced by its rows)
    assert metrics["time_spent_s"] <= 1.5 + SLACK_S
    closed = re.search(rf"search stopped with {len(done)} of ~40 trials done( \((no trial started with (\d+) s "
                       r"left: the shortest took (\d+) s|trial \d+ not started with \d+ s left: .*)\))?; rerun", out)
    assert closed, out
    assert metrics["time_spent_s"] >= 1.5 or closed[1], out
    if closed[2]:
        assert int(closed[3]) <= int(closed[4]), out


def test_a_trial_priced_past_the_budget_is_not_started_and_runs_when_the_search_resumes(
        tmp_path: Path, store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.tracking.store import configure
    from pipeline.tuning import search
    from pipeline.tuning.session import tune

    data = tiny_data()
    full_rows = len(data[0])
    real_price = search.first_epoch_seconds

    def heavy_on_all_rows(rows: int, ended: list, parent=None) -> float | None:
        # an epoch on all the rows (under data fidelity: a continuation or a full-budget trial) priced
        # far past the hour's budget, as a 60,000-image epoch is past the last seconds of one
        price = real_price(rows, ended, parent)
        return None if price is None else price * (1e6 if rows == full_rows else 1.0)

    monkeypatch.setattr(search, "first_epoch_seconds", heavy_on_all_rows)
    params = tiny_params(tmp_path, max_epochs=3, factor=3, initial_points=[], time_budget="1h")
    uri = configure(params)
    names = list(type(params.search_space).model_fields)
    tune(params, hypermodel(params, fidelity="data"), data, "fp-test", tracking_uri=uri, hp_names=names,
         out_dir=tmp_path / "out")
    out = capsys.readouterr().out
    trials = _trials(params)
    aside = [t for t, v in trials.items() if v["status"] == "RUNNING"]
    assert len(aside) == 1, trials  # handed out by the oracle, not run: it stays the oracle's to hand out again
    (aside_id,) = aside
    assert all(v["status"] == "COMPLETED" for t, v in trials.items() if t != aside_id) and len(trials) >= 2
    assert re.search(rf"\(trial {aside_id} not started with \d+ s left: its first epoch on {full_rows} images "
                     r"would take ~\d+ s\); rerun with tune.resume: true", out), out
    rows = {r["trial_id"]: r for r in csv.DictReader((tmp_path / "out/trials.csv").open())}
    assert rows[aside_id]["status"] == "NOT_STARTED" and rows[aside_id]["hp.optimizer"] in ("adam", "rmsprop")
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert metrics["trials"] == len(trials) - 1  # those that ran
    assert metrics["stopped_by_budget"] == 1.0 and metrics["time_budget_s"] == 3600.0  # a DVC metric too
    assert aside_id not in {r.data.tags["trial_id"] for r in child_runs(store)}  # no run for a trial not started
    (parent,) = parent_runs(store)
    assert parent.info.status == "FINISHED" and parent.data.metrics["stopped_by_budget"] == 1.0

    monkeypatch.undo()  # priced as it is: the resumed search runs the trial set aside, under its own id
    tune(params, hypermodel(params, fidelity="data"), data, "fp-test", tracking_uri=uri, hp_names=names,
         out_dir=tmp_path / "out")
    after = _trials(params)
    assert after[aside_id]["status"] == "COMPLETED" and after[aside_id]["epochs"] >= 1
    assert all(after[t] == v for t, v in trials.items() if t != aside_id)  # nothing run again
    runs = child_runs(store)
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(after)  # one run per trial
    assert all(r.info.status == "FINISHED" for r in runs)


def test_no_trial_starts_that_would_end_past_the_budget() -> None:
    from types import SimpleNamespace

    from pipeline.time_budget import TimeBudget
    from pipeline.tuning.search import BudgetSpent, StopWhenSpent

    asked = []
    tuner = SimpleNamespace(trials_left=None, trials_this_process=0, pre_create_trial=lambda: asked.append(1))
    budget = TimeBudget(100.0)
    hook = StopWhenSpent(tuner, budget)
    now = [0.0]
    hook.clock = lambda: now[0]
    hook()  # the first trial of a process always starts
    now[0], tuner.trials_this_process = 30.0, 1
    hook()  # it took 30 s; ~100 s left
    now[0] = 31.0
    hook()  # a distributed oracle answered IDLE: no trial ran, the 1 s is not a trial's cost
    assert hook.shortest_trial == 30.0 and len(asked) == 3
    now[0], tuner.trials_this_process = 71.0, 2  # this one took 40 s
    budget.started -= 75.0  # 25 s left: the shortest trial (30 s) would end past the budget
    with pytest.raises(BudgetSpent):
        hook()
    assert len(asked) == 3 and budget.closed and budget.is_spent()
    assert budget.what_stopped == "no trial started with 25 s left: the shortest took 30 s"
    tuner.trials_left = 0  # the search is known to be over: the oracle is asked (it ends the search)
    hook()
    assert len(asked) == 4


def test_train_stops_its_models_on_the_budget(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import write_params
    from mlflow import MlflowClient
    from test_train_stages import prepare, write_best_hparams

    from pipeline.cli import main

    prepare(project)
    write_best_hparams(project, 0.01)
    write_params(project, train={"epochs": 1000, "seeds": 3, "early_stopping_patience": None, "time_budget": "1s"})
    capsys.readouterr()
    start = time.perf_counter()
    assert main(["train"]) == 0
    wall = time.perf_counter() - start
    out = capsys.readouterr().out
    record = json.loads((project / "results/train/run.json").read_text())
    budget = record["time_budget"]
    assert budget["stopped_by_budget"] is True and budget["budget_s"] == 1.0
    assert budget["models_planned"] == 3 and budget["models_trained"] == 1
    assert 1 <= record["members"][0]["epochs_run"] < 1000 and record["members"][0]["stopped_by_budget"]
    # counted from the stage's start (opening the MLflow store included); at or under the budget when an
    # epoch that would end past it is not started (a fast machine), never past the stage's own wall time
    assert 0.0 < budget["spent_s"] <= wall
    assert "(train.time_budget) spent after" in out and "trained 1 of 3 model(s) (model 1 stopped at epoch" in out
    assert "train epoch 1/3000: member 1/3 epoch 1/1000:" in out and "ETA ~" in out  # the progress lines
    metrics = MlflowClient().get_run(record["run_id"]).data.metrics
    assert metrics["stopped_by_budget"] == 1.0 and metrics["models_trained"] == 1.0
