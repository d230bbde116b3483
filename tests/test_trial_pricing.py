"""The budget prices the next trial by its own rows (``first_epoch_seconds``, ``StopWhenSpent.admit``).

Under data fidelity the shortest trial so far (a low rung on a sliver of the data) says nothing of
the next one, a continuation on all of it: on 60,000 images one started with 8 s left and ran a
70 s epoch past the budget (BENCHMARKS §11).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.time_budget import TimeBudget
from pipeline.tuning.records import TrialRecord
from pipeline.tuning.search import BudgetSpent, StopWhenSpent, first_epoch_seconds


def timed(trial_id: str, rows: int, epochs: int, seconds: float, setup: float) -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status="FINISHED", train_rows=rows, seconds=seconds,
                       trial_seconds=seconds + setup, history=[{"epoch": e} for e in range(epochs)])


def test_a_first_epoch_is_priced_by_its_rows_at_the_cheapest_rate_or_its_parents() -> None:
    small = timed("0001", rows=2_400, epochs=1, seconds=4.0, setup=1.5)  # 1/20 of 48,000 rows
    other = timed("0002", rows=2_400, epochs=2, seconds=12.0, setup=0.5)  # a heavier model: 6 s an epoch
    assert first_epoch_seconds(48_000, []) is None  # nothing to go by: the trial starts
    # the cheapest setup (0.5 s) plus 20x the cheapest epoch (4 s on 2,400 rows)
    assert first_epoch_seconds(48_000, [small, other]) == pytest.approx(0.5 + 80.0)
    # a continuation is priced at its parent's own rate: the same model
    assert first_epoch_seconds(48_000, [small, other], parent=other) == pytest.approx(0.5 + 120.0)
    assert first_epoch_seconds(2_400, [small, other]) == pytest.approx(4.5)
    # a parent without timing (a search from before rows were recorded) falls back on the cheapest
    assert first_epoch_seconds(48_000, [small], parent=TrialRecord("0000")) == pytest.approx(1.5 + 80.0)
    unknown_rows = timed("0003", rows=0, epochs=1, seconds=4.0, setup=1.0)
    assert first_epoch_seconds(48_000, [unknown_rows]) is None


class FakeTuner(SimpleNamespace):
    def get_trial_dir(self, trial_id: str) -> str:
        return f"{self.directory}/trial_{trial_id}"

    def set_aside(self, trial: object, reason: str) -> None:
        self.aside.append((trial.trial_id, reason))


def handed_out(trial_id: str, epochs: int, parent: str | None = None) -> SimpleNamespace:
    values = {"tuner/epochs": epochs, **({"tuner/trial_id": parent} if parent else {})}
    return SimpleNamespace(trial_id=trial_id, hyperparameters=SimpleNamespace(values=values))


def test_a_trial_whose_first_epoch_would_end_past_the_budget_is_set_aside(tmp_path) -> None:
    # 48,000 rows; a rung of 1 of 20 epochs trains on 1/20 of them (the hypermodel says so)
    hypermodel = SimpleNamespace(trial_rows=lambda hp, n: n * hp.values["tuner/epochs"] // 20)
    tuner = FakeTuner(trials_left=None, trials_this_process=0, pre_create_trial=lambda: None, hypermodel=hypermodel,
                      ended_here=[], aside=[], directory=str(tmp_path))
    budget = TimeBudget(1800.0)
    hook = StopWhenSpent(tuner, budget, train_rows=48_000)
    hook.admit(handed_out("0000", 1))  # the first trial of a process always starts
    tuner.trials_this_process = 1
    tuner.ended_here.append(timed("0000", rows=2_400, epochs=1, seconds=4.0, setup=1.0))
    budget.started -= 1800.0 - 30.0  # 30 s left
    hook.admit(handed_out("0001", 1))  # another low rung: ~5 s, it fits
    assert not budget.stopped and tuner.aside == []
    with pytest.raises(BudgetSpent):  # the continuation of 0000 on all the rows: ~81 s
        hook.admit(handed_out("0002", 20, parent="0000"))
    (trial_id, reason), = tuner.aside
    assert trial_id == "0002" and reason.startswith("not started: ") and reason.endswith("a resumed search runs it")
    assert budget.closed and budget.is_spent()
    assert budget.what_stopped == ("trial 0002 not started with 30 s left: "
                                   "its first epoch on 48,000 images would take ~81 s")


def test_no_budget_or_no_rows_admits_every_trial(tmp_path) -> None:
    tuner = FakeTuner(trials_left=None, trials_this_process=3, pre_create_trial=lambda: None, hypermodel=None,
                      ended_here=[timed("0000", rows=10, epochs=1, seconds=100.0, setup=1.0)], aside=[],
                      directory=str(tmp_path))
    StopWhenSpent(tuner, TimeBudget(None), train_rows=1_000).admit(handed_out("0004", 1))
    StopWhenSpent(tuner, TimeBudget(1.0), train_rows=None).admit(handed_out("0004", 1))
    assert tuner.aside == []


def test_a_process_that_continues_the_invocation_has_no_trial_free(tmp_path) -> None:
    # the first process ran trial 0000 (a low rung: 4 s on 2,400 rows) and was recycled (tune.trials_per_process)
    timed("0000", rows=2_400, epochs=1, seconds=4.0, setup=1.0).save(tmp_path / "trial_0000")
    hypermodel = SimpleNamespace(trial_rows=lambda hp, n: n * hp.values["tuner/epochs"] // 20)
    oracle = SimpleNamespace(trials={"0000": SimpleNamespace(status="COMPLETED")})
    tuner = FakeTuner(trials_left=None, trials_this_process=0, pre_create_trial=lambda: None, hypermodel=hypermodel,
                      ended_here=[], aside=[], directory=str(tmp_path), oracle=oracle)
    budget = TimeBudget(1800.0, started=0.0)
    budget.continues = True
    budget.started = budget.started + budget.spent() - 1800.0 + 30.0  # 30 s left
    hook = StopWhenSpent(tuner, budget, train_rows=48_000)
    assert hook.shortest_trial == 5.0  # the trials before it go by until it has run one
    hook()  # 30 s left hold the shortest trial (5 s): the oracle is asked
    with pytest.raises(BudgetSpent):  # the continuation of 0000 on all the rows, at 0000's rate: ~81 s
        hook.admit(handed_out("0001", 20, parent="0000"))
    assert [t for t, _ in tuner.aside] == ["0001"] and budget.closed

    fresh = TimeBudget(1800.0)  # a new invocation: its first trial starts whatever is left
    fresh.started -= 1800.0 - 30.0
    tuner.aside.clear()
    StopWhenSpent(tuner, fresh, train_rows=48_000).admit(handed_out("0001", 20, parent="0000"))
    assert tuner.aside == [] and not fresh.stopped
