"""A search resumes where it stopped whatever the number of processes that run it (issue 24, item 3).

The chief of a distributed search and a one-process search keep one oracle state (``oracle.json``)
but KerasTuner reloads it only when the tuner file of *its own* id exists (``chief.json``,
``tuner0.json``): without one, the search started over at trial 0000 and logged its trials twice.
The fast tests build the tuners in this process (no training); the slow one runs the real thing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, write_params
from tests.tune_fixtures import TINY_SPACE, hypermodel, tiny_params

PROJECT = "search-resume"


def _tuner(params: Any, monkeypatch: pytest.MonkeyPatch, role: str) -> Any:
    """The chief's tuner (``role`` "chief", as ``pipeline.tuning.worker.run_chief`` builds it) or a one-process one."""
    from pipeline.tuning.tuners import make_tuner

    if role == "chief":
        monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
        monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
        monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    else:
        for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
            monkeypatch.delenv(name, raising=False)
    tuner = make_tuner(params.tune, hypermodel(params), seed=params.seed, project_name=PROJECT)
    tuner.save()  # what the chief does before it serves; a one-process tuner after every trial
    return tuner


def _finish(oracle: Any, trial: Any, score: float = 0.5) -> None:
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


@pytest.mark.parametrize("tuner", ["hyperband", "bohb"])
def test_a_one_process_search_reloads_the_chiefs_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       tuner: str) -> None:
    """2 -> 1: worker tuner0 never finished a trial (no tuner0.json), tuner1 finished one."""
    params = tiny_params(tmp_path, tuner=tuner, initial_points=[])
    chief = _tuner(params, monkeypatch, "chief")
    running = chief.oracle.create_trial("tuner0")
    done = chief.oracle.create_trial("tuner1")
    _finish(chief.oracle, done)
    chief.oracle.save()  # as pipeline.tuning.tuners.serve_oracle does after every EndTrial
    assert not (tmp_path / ".tuner" / PROJECT / "tuner0.json").exists()

    alone = _tuner(params, monkeypatch, "one process")
    assert set(alone.oracle.trials) == {running.trial_id, done.trial_id}
    retried = alone.oracle.create_trial("tuner0")
    assert retried.trial_id == running.trial_id  # the trial the kill interrupted runs again, once
    fresh = alone.oracle.create_trial("tuner1")
    assert fresh.trial_id not in {running.trial_id, done.trial_id}


def test_the_chief_reloads_a_one_process_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """1 -> 2: the chief found no chief.json and saved a fresh oracle over the search's own."""
    params = tiny_params(tmp_path, initial_points=[])
    alone = _tuner(params, monkeypatch, "one process")
    first = alone.oracle.create_trial("tuner0")
    _finish(alone.oracle, first)
    alone.save()
    second = alone.oracle.create_trial("tuner0")  # running when the process was killed

    chief = _tuner(params, monkeypatch, "chief")
    assert set(chief.oracle.trials) == {first.trial_id, second.trial_id}
    assert chief.oracle.create_trial("tuner1").trial_id == second.trial_id
    assert chief.oracle.create_trial("tuner0").trial_id not in {first.trial_id, second.trial_id}


def test_a_trial_that_ended_just_before_the_kill_is_not_run_again(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """KerasTuner saves the oracle in ``end_trial`` before it drops the trial from the running ones:
    a kill in between left a finished trial in ``oracle.json``'s ``ongoing_trials``, retried on reload."""
    params = tiny_params(tmp_path, initial_points=[])
    alone = _tuner(params, monkeypatch, "one process")
    trial = alone.oracle.create_trial("tuner0")
    alone.oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
    trial.status = "COMPLETED"
    alone.oracle.end_trial(trial)
    alone.oracle.ongoing_trials["tuner0"] = alone.oracle.trials[trial.trial_id]  # the state end_trial saved
    alone.oracle.save()

    again = _tuner(params, monkeypatch, "one process")
    assert again.oracle.trials[trial.trial_id].status == "COMPLETED"
    assert again.oracle.create_trial("tuner0").trial_id != trial.trial_id


def test_a_trial_killed_as_it_was_handed_out_is_not_left_running(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``Oracle.create_trial`` writes the trial's file before it saves the oracle: a kill in between left a
    RUNNING trial the saved oracle never recorded, never retried, RUNNING in every later search (seen in CI)."""
    params = tiny_params(tmp_path, tuner="bohb", initial_points=[])
    chief = _tuner(params, monkeypatch, "chief")
    _finish(chief.oracle, chief.oracle.create_trial("tuner0"))
    chief.oracle.save()
    orphan = chief.oracle.create_trial("tuner1")
    folder = tmp_path / ".tuner" / PROJECT / f"trial_{orphan.trial_id}"
    (tmp_path / ".tuner" / PROJECT / "oracle.json").write_text(_saved_before(chief, orphan))
    assert (folder / "trial.json").is_file()

    alone = _tuner(params, monkeypatch, "one process")
    assert orphan.trial_id not in alone.oracle.trials and not folder.exists()
    again = alone.oracle.create_trial("tuner0")
    assert again.trial_id == orphan.trial_id and again.status == "RUNNING"  # its id, a trial the oracle records
    assert again.trial_id in alone.oracle.start_order and (folder / "trial.json").is_file()


def _saved_before(tuner: Any, trial: Any) -> str:
    """``oracle.json`` as the oracle saved it before ``trial`` was created (the kill's window)."""
    import json

    state = json.loads((Path(tuner.project_dir) / "oracle.json").read_text())
    assert trial.trial_id in state["start_order"]
    state["start_order"].remove(trial.trial_id)
    state["ongoing_trials"] = {k: v for k, v in state["ongoing_trials"].items() if v != trial.trial_id}
    for bracket in state.get("brackets", []):
        for round_ in bracket["rounds"]:
            round_[:] = [entry for entry in round_ if entry["id"] != trial.trial_id]
    return json.dumps(state)


def test_a_trial_already_logged_as_finished_gets_no_second_run(tmp_path: Path) -> None:
    """The tracking side's guard: whatever hands a finished trial out again, its run is not doubled."""
    from mlflow import MlflowClient

    from pipeline.tracking.runs import SearchRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("tune-test", artifact_location=(tmp_path / "art").as_uri())
    first = SearchRun.open(uri, "tune-test", "h", tuner="hyperband", resume=True, params={}, tags={})
    logger = first.trial_logger()
    done = logger.start_trial("0000", {"lr": 0.01}, {"trial_id": "0000"})
    logger.log_epoch(done, 0, {"val_accuracy": 0.5})
    logger.end_trial(done, "FINISHED", {"score": 0.5}, {})
    killed = logger.start_trial("0001", {"lr": 0.02}, {"trial_id": "0001"})
    logger.end_trial(killed, "KILLED", {}, {})

    again = SearchRun.open(uri, "tune-test", "h", tuner="hyperband", resume=True, params={}, tags={})
    assert again.run_id == first.run_id
    resumed = again.trial_logger()
    assert resumed.start_trial("0000", {"lr": 0.01}, {"trial_id": "0000"}) == done
    resumed.log_epoch(done, 0, {"val_accuracy": 0.9})
    resumed.end_trial(done, "KILLED", {"score": 0.9}, {})
    retried = resumed.start_trial("0001", {"lr": 0.02}, {"trial_id": "0001"})  # killed: runs (and logs) again
    assert retried != killed
    runs = {r.info.run_id: r for r in resumed.trial_runs()}
    assert len(runs) == 3 and runs[done].info.status == "FINISHED" and runs[done].data.metrics["score"] == 0.5


# --------------------------------------------------------------------------- end to end
TUNE = {"tuner": "hyperband", "max_epochs": 3, "factor": 3, "early_stopping_patience": 3,
        "max_consecutive_failed_trials": 10, "initial_points": []}
TRIAL_LINE = re.compile(r"trial (\d{4}): \d+ of ~?\d+")  # a progress line, not "best trial ..."


def _start(project: Path, workers: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {**os.environ, "PYTHONPATH": str(project)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "tune", "--workers", str(workers)], cwd=project,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: killed with its chief and workers
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return proc, lines


def _kill_after(proc: subprocess.Popen[str], lines: list[str], finished: int, timeout: float = 150) -> None:
    """SIGKILL the search (launcher, chief and workers: no chance to save or end a run) once
    ``finished`` trials ended."""
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if sum(bool(TRIAL_LINE.search(line)) for line in list(lines)) >= finished:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                return
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("the search ended before it could be killed:\n" + "".join(lines)[-3000:])


@pytest.mark.slow
def test_a_killed_two_worker_search_resumed_with_one_process_continues(project: Path) -> None:
    """2 -> 1 on one search: killed mid-way, finished by one process. (1 -> 2, the chief reloading a
    one-process search, is ``test_the_chief_reloads_a_one_process_search`` above: it needs no training.)"""
    from tests.test_distributed_search import check_accounting, oracle_trials

    write_params(project, data={"max_samples": 150}, search_space=TINY_SPACE, tune=TUNE,
                 mlflow={"experiment": "tune-test"})
    assert run_cli(["preprocess"], cwd=project, timeout=120).returncode == 0
    proc, lines = _start(project, 2)
    _kill_after(proc, lines, finished=2)
    output = "".join(lines)
    assert "[chief] chief listening on 127.0.0.1:" in output
    assert re.search(r"^\[tuner[01]\] trial \d{4}: ", output, re.M)
    # what the oracle had ended (a trial may end in the instant before the kill, its line unprinted)
    at_kill = oracle_trials(project)
    before = [t for t, status in at_kill.items() if status == "COMPLETED"]
    running = sorted(t for t, status in at_kill.items() if status == "RUNNING")
    assert len(before) >= 2 and len(running) <= 2

    resumed = run_cli(["tune", "--workers", "1"], cwd=project, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = TRIAL_LINE.findall(resumed.stdout)
    assert after and set(after).isdisjoint(before), (before, after)  # it did not start over
    assert sorted(after[:len(running)]) == running  # the trials the kill interrupted run first, ...
    assert len(after) == len(set(after))  # ... once, like every other trial
    trials = oracle_trials(project)
    assert sorted(before + after) == sorted(trials)

    runs = check_accounting(project, workers=("tuner0", "tuner1", None))  # one FINISHED run per trial
    killed = [r for r in runs if r.info.status == "KILLED"]
    # the runs a kill cut short end KILLED (their trials have a FINISHED run too); no other extra run
    assert len(runs) == len(trials) + len(killed) and {r.data.tags["trial_id"] for r in killed} <= set(running)
    for name in ("trials.csv", "history.csv", "summary.png", "best_hparams.json"):
        assert (project / "results/tune" / name).stat().st_size > 0
