"""BOHB's oracle: the density model and PriorBand's mixture concentrate on the good region, and resume."""

from __future__ import annotations

import math
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest

from pipeline.tuning.bohb import (
    MIN_POINTS,
    SOURCE_KEY,
    BOHBOracle,
    bracket_order,
    pooled_ranks,
    propose,
    searched_dimensions,
)
from pipeline.tuning.prior import (
    INCUMBENT,
    INITIAL,
    MODEL,
    PRIOR,
    UNIFORM,
    mutate,
    policy_weights,
    prior_vs_incumbent,
    sample_prior,
)

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


def make_oracle(directory: Path, random_fraction: float | None, initial_points: list[dict] | None = None,
                initial_epochs: int | None = None) -> BOHBOracle:
    oracle = BOHBOracle(objective=kt.Objective("score", "max"), max_epochs=9, factor=3, hyperband_iterations=3,
                        seed=7, hyperparameters=space(), random_fraction=random_fraction,
                        initial_points=initial_points, initial_epochs=initial_epochs)
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
    # once, for the full budget, outside the brackets; then Hyperband, from the bracket screened at 3 epochs
    assert (first[0]["tuner/epochs"], first[0]["tuner/bracket"]) == (9, -1)
    assert first[1]["tuner/epochs"] == 3 and first[1]["tuner/bracket"] == 1
    oracle.save()
    # a new process: the same oracle class reloads the state (KerasTuner's resume) and goes on
    again = make_oracle(tmp_path, random_fraction=1 / 3, initial_points=[point])
    again.reload()
    assert again.initial_points_used == 1 and len(again.trials) == len(first)
    more = run_trials(again, 12)
    ids = [t.trial_id for t in again.trials.values()]
    assert len(ids) == len(set(ids)) == len(first) + len(more)
    assert not any({k: t[k] for k in point} == point for t in more if t.get("tuner/round", 0) == 0)


def test_every_configuration_says_how_it_was_drawn_and_continuations_keep_it(tmp_path: Path) -> None:
    # the report compares values over uniform draws only (pipeline.report.questions.randomized_rows)
    oracle = make_oracle(tmp_path, random_fraction=None, initial_points=[{"kind": "e", "lr": 0.003}])
    trials = run_trials(oracle, 40)
    assert trials[0][SOURCE_KEY] == INITIAL
    new = [t for t in trials[1:] if t.get("tuner/round", 0) == 0]
    counted = {source: sum(t[SOURCE_KEY] == source for t in new) for source in oracle.sources}
    assert counted == oracle.sources and sum(counted.values()) == len(new)
    assert {UNIFORM, PRIOR} <= set(counted)  # both kinds of draw happen in 40 trials
    by_id = {t.trial_id: t.hyperparameters.values for t in oracle.trials.values()}
    for values in by_id.values():
        if "tuner/trial_id" in values:  # a Hyperband continuation: the same configuration, the same source
            assert values[SOURCE_KEY] == by_id[values["tuner/trial_id"]][SOURCE_KEY]
    # the tag is bookkeeping: a configuration already tried is a duplicate whatever its source
    assert oracle._duplicate({**{k: v for k, v in trials[1].items()}, SOURCE_KEY: "model"})


@pytest.mark.parametrize("random_fraction", [0.0])
def test_proposals_are_reproducible(tmp_path: Path, random_fraction: float) -> None:
    a = run_trials(make_oracle(tmp_path / "a", random_fraction), 30)
    b = run_trials(make_oracle(tmp_path / "b", random_fraction), 30)
    assert a == b


def test_a_resumed_search_draws_what_an_uninterrupted_one_draws(tmp_path: Path) -> None:
    """The state (brackets in our order, seed state, policy counts) round-trips through save/reload."""
    point = {"kind": "e", "lr": 0.003}
    straight = run_trials(make_oracle(tmp_path / "straight", random_fraction=None, initial_points=[point]), 24)
    first = make_oracle(tmp_path / "split", random_fraction=None, initial_points=[point])
    head = run_trials(first, 10)
    first.save()
    again = make_oracle(tmp_path / "split", random_fraction=None, initial_points=[point])
    again.reload()
    assert again.get_state()["sources"] == first.sources and again._current_bracket == first._current_bracket
    assert head + run_trials(again, 14) == straight


def test_prior_sampling_is_deterministic_per_seed_and_follows_the_point() -> None:
    dims = searched_dimensions(space().space)
    point = {"kind": "e", "lr": 0.003}
    draw = [sample_prior(point, dims, np.random.default_rng(s)) for s in range(200)]
    assert draw == [sample_prior(point, dims, np.random.default_rng(s)) for s in range(200)]
    assert draw != [sample_prior(point, dims, np.random.default_rng(s + 1)) for s in range(200)]
    kept = sum(d["kind"] == "e" for d in draw) / len(draw)
    assert 0.65 < kept < 0.85  # PRIOR_KEEP = 0.75; 1 in 6 by chance
    assert np.median([abs(math.log10(d["lr"]) - math.log10(0.003)) for d in draw]) < 0.4  # 0.3 decades: 1 sd
    assert {d["flag"] for d in draw} == {False, True}  # a key the point leaves out is uniform


def test_mutate_changes_one_to_three_values() -> None:
    dims = searched_dimensions(space().space)
    values = {"kind": "c", "lr": 0.01, "flag": True}
    for seed in range(50):
        changed = mutate(values, dims, np.random.default_rng(seed))
        assert 1 <= sum(changed[k] != values[k] for k in values) <= 3


def test_policy_weights_follow_priorband() -> None:
    # uniform share 1 / (1 + eta**rung): cheap brackets explore, full-budget ones exploit
    weights = [policy_weights(r, 3, has_prior=True, has_incumbent=False, model_ready=False, prior_share=0.0)
               for r in (0, 1, 2)]
    assert [w[UNIFORM] for w in weights] == [0.5, 0.25, 0.1]
    assert [w[PRIOR] for w in weights] == [0.5, 0.75, 0.9]
    both = policy_weights(1, 3, has_prior=True, has_incumbent=True, model_ready=True, prior_share=0.2)
    assert both[MODEL] == pytest.approx(0.375) and both[PRIOR] == pytest.approx(0.075)
    assert both[INCUMBENT] == pytest.approx(0.3) and sum(both.values()) == pytest.approx(1.0)
    alone = policy_weights(0, 3, has_prior=False, has_incumbent=False, model_ready=False, prior_share=0.0)
    assert alone[UNIFORM] == 1.0  # nothing to follow yet: Hyperband's random sampling


def test_a_prior_far_from_the_good_configurations_fades() -> None:
    dims = searched_dimensions(space().space)
    prior, incumbent = {"kind": "a", "lr": 1e-4}, {"kind": GOOD, "lr": 0.01, "flag": True}
    near_incumbent = [{"kind": GOOD, "lr": 0.012, "flag": f} for f in (True, False)] * 2
    assert prior_vs_incumbent(near_incumbent, [prior], incumbent, dims) == pytest.approx(1 / 6)
    near_prior = [{"kind": "a", "lr": 1.2e-4, "flag": True}] * 4
    assert prior_vs_incumbent(near_prior, [prior], incumbent, dims) == pytest.approx(5 / 6)


def test_the_model_uses_every_budget() -> None:
    """Ranked within the largest budget each configuration reached: 6 configurations over 3 budgets suffice."""
    dims = searched_dimensions(space().space)
    observations = [({"kind": k, "lr": lr, "flag": True}, planted({"kind": k, "lr": lr}), budget)
                    for k, lr, budget in [("a", 1e-4, 1), (GOOD, 1e-2, 1), ("b", 1e-3, 1), ("d", 1e-1, 3),
                                          (GOOD, 1.1e-2, 3), ("e", 1e-4, 9)]]
    ranks = dict((v["kind"] + str(v["lr"]), q) for v, q in pooled_ranks(observations, maximize=True))
    assert ranks[f"{GOOD}0.01"] == 0.0 and ranks[f"{GOOD}0.011"] == 0.0 and ranks["a0.0001"] == 1.0
    picks = [propose(observations, dims, np.random.default_rng(s), maximize=True) for s in range(20)]
    assert sum(p["kind"] == GOOD for p in picks) >= 12


def test_brackets_start_screened_at_a_third_and_end_with_full_budgets(tmp_path: Path) -> None:
    assert bracket_order(3) == [1, 2, 0] and bracket_order(4) == [2, 3, 1, 0] and bracket_order(2) == [1, 0]
    trials = run_trials(make_oracle(tmp_path, random_fraction=None), 200)
    # one iteration of KerasTuner's Hyperband holds 23 trials (what tuners.expected_trials counts) x 3 iterations
    assert len(trials) == 23 * 3
    first = [(t["tuner/bracket"], t["tuner/epochs"]) for t in trials[:7]]
    assert first == [(1, 3)] * 5 + [(1, 9)] * 2
    assert [t["tuner/bracket"] for t in trials[20:23]] == [0, 0, 0]


def test_a_bad_initial_point_is_left_behind(tmp_path: Path) -> None:
    """With the initial point planted in the worst region, the search still finds the good one."""
    bad = {"kind": "a", "lr": 1e-4}
    trials = run_trials(make_oracle(tmp_path, random_fraction=None, initial_points=[bad]), 24)
    best = max(trials[1:], key=planted)
    assert planted(best) > planted({**trials[0]}) + 0.5 and best["kind"] == GOOD


def test_under_data_fidelity_initial_points_run_one_rung_below_the_full_budget(tmp_path: Path) -> None:
    from pipeline.tuning.bohb import initial_point_epochs

    # epochs fidelity: the full budget; data fidelity: max_epochs / factor (on that fraction of the data)
    assert [initial_point_epochs(9, 3, f) for f in ("epochs", "data")] == [9, 3]
    assert initial_point_epochs(3, 3, "data") == 1 and initial_point_epochs(10, 3, "data") == 4
    point = {"kind": "e", "lr": 0.003}
    oracle = make_oracle(tmp_path, random_fraction=1 / 3, initial_points=[point], initial_epochs=3)
    first = run_trials(oracle, 6)
    assert {k: first[0][k] for k in point} == point
    assert (first[0]["tuner/epochs"], first[0]["tuner/bracket"]) == (3, -1)
    assert all(t["tuner/bracket"] >= 0 for t in first[1:])  # the brackets as without the point
    oracle.save()
    again = make_oracle(tmp_path, random_fraction=1 / 3, initial_points=[point])  # not told: the state says
    again.reload()
    assert again.initial_epochs == 3
