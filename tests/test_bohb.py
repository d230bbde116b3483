"""BOHB's oracle: proposals from the density model concentrate on the good region, and resume."""

from __future__ import annotations

import math
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest

from pipeline.tuning.bohb import MIN_POINTS, BOHBOracle, propose, searched_dimensions

GOOD = "c"


def space() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("kind", ["a", "b", GOOD, "d", "e", "f"])
    hp.Float("lr", 1e-4, 1e-1, sampling="log")
    hp.Boolean("flag")
    hp.Fixed("width", 32)
    return hp


def planted(values: dict) -> float:
    """Best at kind c and lr 0.01, whatever the flag: a bit of noise-free structure to learn."""
    return (1.0 if values["kind"] == GOOD else 0.3) - abs(math.log10(values["lr"]) + 2) * 0.2


def make_oracle(directory: Path, random_fraction: float, initial_points: list[dict] | None = None) -> BOHBOracle:
    oracle = BOHBOracle(objective=kt.Objective("score", "max"), max_epochs=9, factor=3, hyperband_iterations=3,
                        seed=7, hyperparameters=space(), random_fraction=random_fraction,
                        initial_points=initial_points)
    oracle._set_project_dir(str(directory), "search")  # KerasTuner's tuner does this for its oracle
    return oracle


def run_trials(oracle: BOHBOracle, count: int) -> list[dict]:
    proposed = []
    for _ in range(count):
        trial = oracle.create_trial("tuner0")
        if trial.status != "RUNNING":
            break
        values = trial.hyperparameters.values
        proposed.append(dict(values))
        oracle.update_trial(trial.trial_id, {"score": planted(values)}, step=int(values.get("tuner/epochs", 1)))
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    return proposed


def share_good(trials: list[dict]) -> float:
    new = [t for t in trials if t.get("tuner/round", 0) == 0]  # configurations the oracle chose, not promotions
    return sum(t["kind"] == GOOD for t in new) / len(new)


def test_propose_needs_enough_points_and_then_follows_the_good_ones() -> None:
    dims = searched_dimensions(space().space)
    assert [d.hp.name for d in dims] == ["kind", "lr", "flag"]  # fixed keys are not modelled
    rng = np.random.default_rng(0)
    few = [({"kind": "a", "lr": 0.01, "flag": True}, 0.5, 3)] * (MIN_POINTS - 1)
    assert propose(few, dims, rng, maximize=True) is None
    observations = [({"kind": k, "lr": lr, "flag": f}, planted({"kind": k, "lr": lr}), 3)
                    for k in "abcdef" for lr in (1e-4, 1e-2) for f in (False, True)]
    picks = [propose(observations, dims, np.random.default_rng(s), maximize=True) for s in range(20)]
    assert sum(p["kind"] == GOOD for p in picks) >= 15


def test_bohb_concentrates_on_the_good_region_where_random_does_not(tmp_path: Path) -> None:
    bohb = run_trials(make_oracle(tmp_path / "bohb", random_fraction=0.0), 60)
    random = run_trials(make_oracle(tmp_path / "random", random_fraction=1.0), 60)
    late_bohb = bohb[len(bohb) // 2:]
    assert share_good(late_bohb) > 0.5
    assert share_good(random) < 0.35  # 1 in 6 by chance


def test_initial_points_first_and_resume_after_a_kill(tmp_path: Path) -> None:
    point = {"kind": "e", "lr": 0.003}
    oracle = make_oracle(tmp_path, random_fraction=1 / 3, initial_points=[point])
    first = run_trials(oracle, 12)
    assert {k: first[0][k] for k in point} == point
    # once, for the full budget, outside the brackets; then Hyperband as usual
    assert (first[0]["tuner/epochs"], first[0]["tuner/bracket"]) == (9, -1)
    assert first[1]["tuner/epochs"] == 1 and first[1]["tuner/bracket"] == 2
    oracle.save()
    # a new process: the same oracle class reloads the state (KerasTuner's resume) and goes on
    again = make_oracle(tmp_path, random_fraction=1 / 3, initial_points=[point])
    again.reload()
    assert again.initial_points_used == 1 and len(again.trials) == len(first)
    more = run_trials(again, 12)
    ids = [t.trial_id for t in again.trials.values()]
    assert len(ids) == len(set(ids)) == len(first) + len(more)
    assert not any({k: t[k] for k in point} == point for t in more if t.get("tuner/round", 0) == 0)


@pytest.mark.parametrize("random_fraction", [0.0])
def test_proposals_are_reproducible(tmp_path: Path, random_fraction: float) -> None:
    a = run_trials(make_oracle(tmp_path / "a", random_fraction), 30)
    b = run_trials(make_oracle(tmp_path / "b", random_fraction), 30)
    assert a == b
