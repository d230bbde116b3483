"""train.hedge_initial_point: the final model averages the search's best and the best initial point when
validation cannot tell them apart; tune hands train the initial point; the report says what each retrained to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.model.final import final_configurations, member_plan
from pipeline.objective import noise_allowance
from pipeline.report.render import Document, to_markdown
from pipeline.report.search_gain import hedge_comparison, write_section
from pipeline.tuning.records import TrialRecord
from pipeline.tuning.results import best_initial_point, candidate

SEARCHED = {"trial_id": "0021", "score": 0.522, "values": {"lr": 0.002}}
RECIPE = {"trial_id": "0000", "score": 0.500, "values": {"lr": 0.003}, "initial_point": True}


def test_the_initial_point_joins_only_when_the_best_leads_it_by_less_than_the_noise() -> None:
    # cifar_like seed 0 (BENCHMARKS §8b): 0.522 vs 0.500 on 180 images, noise ~0.074
    plan = final_configurations([SEARCHED], RECIPE, 1, True, 180, "val_accuracy")
    assert [c["trial_id"] for c in plan] == ["0021", "0000"] and plan[1]["hedge"] is True
    assert "hedge" not in plan[0]
    # the same lead on 7,500 images is beyond the noise (~0.012): the search's best alone
    assert noise_allowance(0.522, 7500, "val_accuracy") < 0.022
    assert final_configurations([SEARCHED], RECIPE, 1, True, 7500, "val_accuracy") == [SEARCHED]
    # switched off, or nothing to hedge with
    assert final_configurations([SEARCHED], RECIPE, 1, False, 180, "val_accuracy") == [SEARCHED]
    assert final_configurations([SEARCHED], None, 1, True, 180, "val_accuracy") == [SEARCHED]
    # the initial point is already a member (the recipe won, or it is among `configurations`)
    assert final_configurations([RECIPE], RECIPE, 1, True, 180, "val_accuracy") == [RECIPE]
    assert final_configurations([SEARCHED, RECIPE], RECIPE, 2, True, 180, "val_accuracy") == [SEARCHED, RECIPE]
    # losses have no closed-form noise here: only an exact tie hedges
    loss_best, loss_recipe = {**SEARCHED, "score": 0.40}, {**RECIPE, "score": 0.41}
    assert final_configurations([loss_best], loss_recipe, 1, True, 180, "val_loss") == [loss_best]
    assert len(final_configurations([loss_best], {**loss_recipe, "score": 0.40}, 1, True, 180, "val_loss")) == 2


def test_members_go_seed_by_seed_so_a_time_budget_keeps_both_configurations() -> None:
    plan = member_plan([SEARCHED, {**RECIPE, "hedge": True}], seeds=3, base_seed=42)
    assert [(m["trial_id"], m["seed"], m["check"]) for m in plan] == [
        ("0021", 42, True), ("0000", 42, True), ("0021", 43, False), ("0000", 43, False),
        ("0021", 44, False), ("0000", 44, False)]


def test_best_hparams_names_the_best_initial_point(tmp_path: Path) -> None:
    records = [TrialRecord(trial_id="0000", status="FINISHED", score=0.50, bracket=-1, values={"lr": 0.003}),
               TrialRecord(trial_id="0001", status="FINISHED", score=0.55, bracket=-1, values={"lr": 0.01}),
               TrialRecord(trial_id="0002", status="FINISHED", score=0.60, bracket=0, values={"lr": 0.002}),
               TrialRecord(trial_id="0003", status="FAILED", bracket=-1, values={"lr": 0.1})]
    initial = best_initial_point(records, "val_accuracy")
    assert initial is not None and initial.trial_id == "0001"
    entry = candidate(initial, "val_accuracy", tmp_path / "trial_0001")
    assert entry["initial_point"] is True and entry["score"] == 0.55
    assert candidate(records[2], "val_accuracy", tmp_path)["initial_point"] is False
    # tuners that do not mark initial points (KerasTuner's own): nothing to hedge with
    assert best_initial_point([TrialRecord(trial_id="0", status="FINISHED", score=0.9, bracket=0)],
                              "val_accuracy") is None


def test_the_report_states_what_each_hedged_configuration_retrained_to(tmp_path: Path) -> None:
    run = {"trial_id": "0021", "members": [
        {"trial_id": "0021", "retrained_score": 0.50, "hedge": False},
        {"trial_id": "0000", "retrained_score": 0.52, "hedge": True},
        {"trial_id": "0021", "retrained_score": 0.48, "hedge": False},
        {"trial_id": "0000", "retrained_score": 0.54, "hedge": True}]}
    hedge = hedge_comparison(run)
    assert hedge == {"searched_trial": "0021", "initial_trial": "0000", "searched_mean": pytest.approx(0.49),
                     "initial_mean": pytest.approx(0.53), "searched_n": 2, "initial_n": 2, "kept": "both",
                     "both_score": None, "initial_point_score": None}
    assert hedge_comparison({"trial_id": "0021", "members": run["members"][::2]}) is None  # no hedge member
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"search_gain": 0.022, "search_gain_epochs": 9, "best_initial_score": 0.5,
                                   "best_initial_trial": "0000", "best_searched_score": 0.522,
                                   "best_searched_trial": "0021", "best_trial_from": "search"}))
    train_run = tmp_path / "run.json"
    train_run.write_text(json.dumps(run))
    doc = Document("r")
    figures = write_section(doc, metrics, train_run)
    text = to_markdown(doc)
    assert figures is not None and figures["hedge"]["initial_n"] == 2
    assert "so train retrained both (train.hedge_initial_point)" in text and "The final model averages both." in text
    assert "0.4900 (mean of 2 seeds) and 0.5300 (mean of 2): a difference of -0.0400" in text

    # train's decision (resolve_hedge) is stated with both validation scores
    train_run.write_text(json.dumps({**run, "hedge": {"kept": "initial point", "both_score": 0.51,
                                                      "initial_point_score": 0.53, "initial_trial": "0000"}}))
    doc = Document("r")
    write_section(doc, metrics, train_run)
    assert ("all their models reach validation 0.5100, no better than the initial point's alone (0.5300): the "
            "final model is the initial point's models alone") in to_markdown(doc)


def _constant_model(probabilities: list[float]):
    """A model that predicts ``probabilities`` for every input (a softmax over a bias, zero weights)."""
    import keras
    import numpy as np

    inputs = keras.Input(shape=(2,))
    layer = keras.layers.Dense(2, activation="softmax")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.zeros((2, 2), "float32"), np.log(np.asarray(probabilities, "float32"))])
    return model


@pytest.mark.parametrize(("searched", "y_val", "kept"), [
    ([0.6, 0.4], [1, 1, 1, 0], "initial point"),  # averaged in, the searched models change no prediction: a tie
    ([0.99, 0.01], [1, 1, 1, 0], "initial point"),  # they make the average worse
    ([0.99, 0.01], [0, 0, 0, 1], "both"),           # they make it better: kept
])
def test_the_searched_configuration_stays_only_if_it_raises_validation(searched: list[float], y_val: list[int],
                                                                      kept: str) -> None:
    import numpy as np

    from pipeline.model.final import FinalModel, Member, ensemble_of, resolve_hedge

    def member(index: int, trial_id: str, probabilities: list[float], hedge: bool) -> Member:
        return Member(index=index, trial_id=trial_id, values={}, search_score=0.5, retrained_score=0.5, score=0.5,
                      source="retrained", shortfall=0.0, epochs_run=1, hedge=hedge,
                      model=_constant_model(probabilities))

    members = [member(0, "0021", searched, False), member(1, "0000", [0.4, 0.6], True),
               member(2, "0021", searched, False), member(3, "0000", [0.4, 0.6], True)]
    data = (np.zeros((4, 2), "float32"), np.asarray(y_val), np.zeros((4, 2), "float32"), np.asarray(y_val))
    model, score = ensemble_of(members, data, "val_accuracy")
    final = FinalModel(model, members, score, "val_accuracy", planned=4)
    resolve_hedge(final, data)
    recipe_alone = float(np.mean(np.asarray(y_val) == 1))
    assert final.hedge == {"kept": kept, "both_score": score, "initial_point_score": recipe_alone,
                           "initial_trial": "0000"}
    if kept == "both":
        assert final.score == score > recipe_alone and all(m.in_ensemble for m in members)
    else:
        assert final.score == recipe_alone >= score
        assert [(m.in_ensemble, m.left_out) for m in members] == [(False, "hedge"), (True, ""), (False, "hedge"),
                                                                  (True, "")]
    assert len(final.model.predict(data[2], verbose=0)) == 4


def test_the_recipe_alone_is_compared_even_when_the_margin_left_it_out() -> None:
    """The margin (against the best member) left the initial point's models out, but averaged alone they
    score higher on validation than the searched models: the final model is theirs, as the recipe alone."""
    import numpy as np

    from pipeline.model.final import FinalModel, Member, ensemble_of, resolve_hedge

    def member(index: int, trial_id: str, probabilities: list[float], hedge: bool, score: float) -> Member:
        return Member(index=index, trial_id=trial_id, values={}, search_score=0.5, retrained_score=score,
                      score=score, source="retrained", shortfall=0.0, epochs_run=1, hedge=hedge,
                      in_ensemble=not hedge, left_out="margin" if hedge else "",
                      model=_constant_model(probabilities))

    # the members' own scores only place the margins; the averages are scored on the validation labels
    members = [member(0, "0021", [0.99, 0.01], False, 0.9), member(1, "0000", [0.4, 0.6], True, 0.6),
               member(2, "0021", [0.45, 0.55], False, 0.85), member(3, "0000", [0.3, 0.7], True, 0.59)]
    y_val = np.asarray([1, 1, 1, 0])
    data = (np.zeros((4, 2), "float32"), y_val, np.zeros((4, 2), "float32"), y_val)
    model, score = ensemble_of([members[0], members[2]], data, "val_accuracy")  # class 0 everywhere: 0.25
    final = FinalModel(model, members, score, "val_accuracy", planned=4)
    resolve_hedge(final, data, margin=0.01)  # 0.6 and 0.59: within the noise of 4 images of each other
    assert final.hedge == {"kept": "initial point", "both_score": 0.25, "initial_point_score": 0.75,
                           "initial_trial": "0000"}
    assert final.score == 0.75
    assert [(m.in_ensemble, m.left_out) for m in members] == [(False, "hedge"), (True, ""), (False, "hedge"),
                                                              (True, "")]


def test_no_hedge_no_decision() -> None:
    import numpy as np

    from pipeline.model.final import FinalModel, Member, resolve_hedge

    members = [Member(index=0, trial_id="0021", values={}, search_score=0.5, retrained_score=0.5, score=0.5,
                      source="retrained", shortfall=0.0, epochs_run=1, model=_constant_model([0.5, 0.5]))]
    final = FinalModel(members[0].model, members, 0.5, "val_accuracy")
    resolve_hedge(final, (np.zeros((2, 2)), np.zeros(2, int), np.zeros((2, 2)), np.zeros(2, int)))
    assert final.hedge is None and members[0].in_ensemble


def test_train_averages_the_initial_point_in_and_says_so(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The stage in this process on tiny digits: best_hparams.json as tune writes it, with an initial point
    0.01 behind the best on 45 validation images (noise ~0.09): both configurations train, seed by seed."""
    from mlflow import MlflowClient
    from test_train_stages import GOOD_LR, prepare, write_best_hparams

    from pipeline.cli import main

    prepare(project)
    write_best_hparams(project, GOOD_LR)
    path = project / "results/tune/best_hparams.json"
    best = json.loads(path.read_text())
    best["top"] = [{"trial_id": "0007", "score": 0.9, "values": {"learning_rate": GOOD_LR}, "trial_dir": None}]
    # near the best's rate: both retrain within the ensemble margin, so the hedge is decided on validation
    best["initial_point"] = {"trial_id": "0000", "score": 0.89, "values": {"learning_rate": GOOD_LR * 0.8},
                             "trial_dir": None, "initial_point": True}
    path.write_text(json.dumps(best))
    capsys.readouterr()
    assert main(["train", "-S", "train.epochs=2", "-S", "train.seeds=2"]) == 0
    out = capsys.readouterr().out
    assert "hedge: the search's best trial 0007 (val_accuracy 0.9000) is within the validation noise" in out
    record = json.loads((project / "results/train/run.json").read_text())
    assert [(m["trial_id"], m["seed"], m["hedge"]) for m in record["members"]] == [
        ("0007", 42, False), ("0000", 42, True), ("0007", 43, False), ("0000", 43, True)]
    tags = MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).data.tags
    assert tags["hedge_trial"] == "0000" and tags["ensemble_trials"] == "0007,0000"
    # validation decided whether the search's configuration stays in the average, and every output says which
    decision = record["hedge"]
    assert decision["kept"] in ("both", "initial point") and decision["initial_trial"] == "0000"
    assert (decision["both_score"] > decision["initial_point_score"]) == (decision["kept"] == "both")
    assert record["validation_score"] == (decision["both_score"] if decision["kept"] == "both"
                                          else decision["initial_point_score"])
    averaged = {m["trial_id"] for m in record["members"] if m["in_ensemble"]}
    assert averaged == ({"0007", "0000"} if decision["kept"] == "both" else {"0000"})
    assert tags["hedge_kept"] == decision["kept"] and set(tags["final_trials"].split(",")) == averaged
    assert ("the final model averages both" if decision["kept"] == "both"
            else "the final model is trial 0000's models alone") in out

    # switched off: the search's configuration alone, no line, no tag
    capsys.readouterr()
    assert main(["train", "-S", "train.epochs=2", "-S", "train.seeds=2", "-S", "train.hedge_initial_point=false"]) == 0
    assert "hedge:" not in capsys.readouterr().out
    record = json.loads((project / "results/train/run.json").read_text())
    assert {m["trial_id"] for m in record["members"]} == {"0007"} and len(record["members"]) == 2
    assert "hedge_trial" not in MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).data.tags
