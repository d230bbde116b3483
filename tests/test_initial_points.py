"""Every tuner starts from tune.initial_points (BOHB runs them itself; the others draw them first)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tune_fixtures import hypermodel, tiny_params

from pipeline.tuning.tuners import make_tuner

POINT = {"init": "he_normal", "optimizer": "rmsprop", "learning_rate": 0.0042}


@pytest.mark.parametrize("tuner", ["hyperband", "random", "bayesian"])
def test_the_first_configuration_is_the_initial_point_and_a_resume_does_not_repeat_it(tmp_path: Path,
                                                                                       tuner: str) -> None:
    params = tiny_params(tmp_path, tuner=tuner, initial_points=[POINT], max_trials=3)
    made = make_tuner(params.tune, hypermodel(params), seed=params.seed, project_name="p")
    first = made.oracle.create_trial("tuner0")
    assert {k: first.hyperparameters.values[k] for k in POINT} == POINT
    second = made.oracle.create_trial("tuner1")
    assert {k: second.hyperparameters.values[k] for k in POINT} != POINT

    # a resumed search (the same oracle state reloaded) knows the point has run
    for trial in (first, second):
        made.oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        made.oracle.end_trial(trial)
    made.save()
    again = make_tuner(params.tune, hypermodel(params), seed=params.seed, project_name="p")
    assert again.oracle.trials  # reloaded
    later = again.oracle.create_trial("tuner2")
    assert {k: later.hyperparameters.values[k] for k in POINT} != POINT


def test_without_initial_points_the_draws_are_the_oracles_own(tmp_path: Path) -> None:
    params = tiny_params(tmp_path, tuner="random", max_trials=3)
    made = make_tuner(params.tune, hypermodel(params), seed=params.seed, project_name="p")
    assert not hasattr(made.oracle, "initial_points")
