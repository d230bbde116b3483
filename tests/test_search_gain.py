"""What the search bought over the initial point: the figures from trial records, metrics.json, MLflow, the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.report.render import Document, to_markdown
from pipeline.report.search_gain import seed_spread, write_section
from pipeline.tuning.gain import search_gain
from pipeline.tuning.records import TrialRecord


def record(trial_id: str, score: float | None, bracket: int, epochs: int, status: str = "FINISHED") -> TrialRecord:
    return TrialRecord(trial_id=trial_id, status=status, score=score, bracket=bracket, target_epochs=epochs)


HAND_MADE = [
    record("0000", 0.950, -1, 9),  # the initial point, run for max_epochs outside the brackets
    record("0001", 0.990, 1, 3),  # better, but after 3 epochs only: not compared
    record("0002", 0.930, 1, 9),
    record("0003", 0.962, 0, 9),  # the best searched configuration at 9 epochs
    record("0004", None, 0, 9, status="FAILED"),
    record("0005", 0.999, 0, 9, status="KILLED"),  # not finished: not counted
]


def test_gain_is_best_searched_at_full_epochs_minus_best_initial() -> None:
    gain = search_gain(HAND_MADE, "val_accuracy", max_epochs=9)
    assert gain.metrics() == {
        "search_gain": pytest.approx(0.012), "search_gain_epochs": 9,
        "best_initial_score": 0.95, "best_initial_trial": "0000",
        "best_searched_score": 0.962, "best_searched_trial": "0003",
        "best_trial": "0001", "initial_point_won": False,
        "best_trial_from": "search", "best_trial_epochs": 3,
    }
    assert "better than the initial point by +0.0120" in gain.sentence()
    assert gain.run_metrics() == {"search_gain": pytest.approx(0.012), "best_initial_score": 0.95,
                                  "best_searched_score": 0.962}


def test_the_recipe_wins_ties_and_loss_is_minimized() -> None:
    tie = search_gain([record("0000", 0.95, -1, 9), record("0001", 0.95, 0, 9)], "val_accuracy", 9)
    assert tie.gain == 0.0 and tie.initial_point_won is True
    assert tie.sentence().startswith("the initial point was not beaten")
    # val_loss: lower is better, and a positive gain still means "the search found better"
    loss = search_gain([record("0000", 0.30, -1, 9), record("0001", 0.20, 0, 9)], "val_loss", 9)
    assert loss.gain == pytest.approx(0.10) and loss.initial_point_won is False


def test_an_initial_point_run_short_is_compared_at_its_own_budget() -> None:
    # data fidelity: the recipe ran 3 of 9 epochs (pipeline.tuning.bohb.initial_point_epochs)
    records = [record("0000", 0.90, -1, 3), record("0001", 0.93, 2, 3), record("0002", 0.99, 1, 9),
               record("0003", 0.80, 2, 1)]
    gain = search_gain(records, "val_accuracy", max_epochs=9)
    assert (gain.epochs, gain.best_searched_trial, gain.best_trial) == (3, "0001", "0002")
    assert gain.gain == pytest.approx(0.03) and gain.initial_point_won is False
    assert "at 3 epochs on validation" in gain.sentence()


def test_a_searched_best_trial_past_the_initial_points_budget_is_named() -> None:
    # data fidelity (the big RGB folder): the recipe ran 3 epochs and no 3-epoch screen beat it, but the
    # best trial is a searched configuration at 9 epochs, which is what train retrains
    records = [record("0000", 0.69, -1, 3), record("0001", 0.68, 1, 3), record("0002", 0.99, 0, 9)]
    gain = search_gain(records, "val_accuracy", max_epochs=9)
    assert gain.initial_point_won is True and gain.gain == pytest.approx(-0.01)
    assert (gain.best_trial, gain.best_trial_from, gain.best_trial_epochs) == ("0002", "search", 9)
    assert gain.run_tags()["best_trial_from"] == "search"
    sentence = gain.sentence()
    assert sentence.startswith("the initial point was not beaten")
    assert "the best trial overall, 0002 (val_accuracy 0.9900 after 9 epochs), is a searched configuration" in sentence
    # the recipe the best trial: nothing added
    won = search_gain([record("0000", 0.99, -1, 3), record("0001", 0.68, 1, 3)], "val_accuracy", 9)
    assert won.best_trial_from == "initial point" and "best trial overall" not in won.sentence()
    # no initial point: no claim either way
    assert search_gain([record("0000", 0.9, 1, 3)], "val_accuracy", 9).best_trial_from is None


def test_a_tie_goes_to_the_trial_train_retrains_in_every_output() -> None:
    # the digits default of final_vs_recipe: the recipe stopped early after 7 epochs at 1.0, a searched
    # trial reached 1.0 after 9; train retrains top[0] (the longer-trained), so the best trial is that one
    from pipeline.tuning.results import best_record, top_configurations

    recipe = TrialRecord(trial_id="0000", status="FINISHED", score=1.0, bracket=-1, target_epochs=9,
                         values={"lr": 0.003}, history=[{"epoch": e} for e in range(7)])
    searched = TrialRecord(trial_id="0007", status="FINISHED", score=1.0, bracket=0, target_epochs=9,
                           values={"lr": 0.002}, history=[{"epoch": e} for e in range(9)])
    records = [recipe, searched]
    assert best_record(records, "val_accuracy") is searched
    assert top_configurations(records, "val_accuracy", 2) == [searched, recipe]
    gain = search_gain(records, "val_accuracy", 9)
    assert (gain.best_trial, gain.best_trial_from, gain.initial_point_won) == ("0007", "search", True)
    # an equal tie (same epochs) goes to the earlier trial
    searched.history = searched.history[:7]
    assert best_record(records, "val_accuracy") is recipe
    assert search_gain(records, "val_accuracy", 9).best_trial == "0000"


def test_report_does_not_credit_the_recipe_with_a_searched_best_trial(tmp_path: Path) -> None:
    records = [record("0000", 0.69, -1, 3), record("0001", 0.68, 1, 3), record("0002", 0.99, 0, 9)]
    metrics = _write(tmp_path / "metrics.json", search_gain(records, "val_accuracy", 9).metrics())
    doc = Document("r")
    write_section(doc, metrics, tmp_path / "missing.json")
    text = to_markdown(doc)
    assert "owes its configuration to the recipe" not in text
    assert "At equal epochs the recipe was not beaten" in text
    assert "best trial overall, 0002 (9 epochs), is a searched configuration" in text
    assert "not trained beyond 3 epochs" in text


def test_a_searched_trial_the_time_budget_cut_short_is_not_compared() -> None:
    # trial 0002 was given 3 epochs, but tune.time_budget stopped it after 2: it stands for no budget
    cut = TrialRecord(trial_id="0002", status="FINISHED", score=0.99, bracket=2, target_epochs=3, budget_cut_at=2)
    records = [record("0000", 0.90, -1, 3), record("0001", 0.85, 2, 3), cut]
    gain = search_gain(records, "val_accuracy", max_epochs=9)
    assert (gain.best_searched_trial, gain.initial_point_won) == ("0001", True)
    assert gain.gain == pytest.approx(-0.05)
    assert search_gain([record("0000", 0.90, -1, 3), cut], "val_accuracy", 9).best_searched_score is None


def test_without_initial_points_there_is_no_gain() -> None:
    gain = search_gain([record("0000", 0.9, 2, 1), record("0001", 0.95, 0, 9)], "val_accuracy", 9)
    assert gain.gain is None and gain.initial_point_won is None and gain.best_searched_trial == "0001"
    doc = Document("r")
    assert write_section(doc, None, None) is None  # no metrics.json: no section
    assert to_markdown(doc).strip() == "# r"


def test_report_section_states_the_gain_and_the_seed_spread(tmp_path: Path) -> None:
    metrics = _write(tmp_path / "metrics.json", search_gain(HAND_MADE, "val_accuracy", 9).metrics())
    run = _write(tmp_path / "run.json", {"trial_id": "0003", "members": [
        {"trial_id": "0003", "retrained_score": s} for s in (0.96, 0.97, 0.98)]})
    doc = Document("r")
    figures = write_section(doc, metrics, run)
    text = to_markdown(doc)
    assert "What the search bought" in text and "better than the initial point by +0.0120" in text
    assert "both after 9 epochs" in text and "0.9600-0.9800 (mean 0.9700" in text
    assert figures["seed_spread"]["sd"] == pytest.approx(0.01)
    assert "within one seed-to-seed standard deviation" not in text  # 0.012 > 0.01
    assert seed_spread({"trial_id": "x", "members": [{"trial_id": "x", "retrained_score": 0.9}]}) is None


def test_report_says_when_the_recipe_was_not_beaten(tmp_path: Path) -> None:
    records = [record("0000", 0.97, -1, 9), record("0001", 0.96, 0, 9)]
    metrics = _write(tmp_path / "metrics.json", search_gain(records, "val_accuracy", 9).metrics())
    doc = Document("r")
    write_section(doc, metrics, tmp_path / "missing.json")
    assert "The recipe was not beaten" in to_markdown(doc)


def _write(path: Path, data: dict | None) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.slow
def test_a_real_search_leaves_a_planted_bad_initial_point_behind(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Init zeros stays at chance; BOHB's brackets find better, and the gain says so
    in metrics.json and on the search's MLflow run."""
    from mlflow import MlflowClient

    from pipeline.tracking.store import configure
    from pipeline.tuning.session import tune
    from tests.tune_fixtures import TINY_SPACE, hypermodel, parent_runs, tiny_data, tiny_params

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setitem(TINY_SPACE, "init", {"choices": ["zeros", "he_normal"]})
    monkeypatch.setitem(TINY_SPACE, "learning_rate", {"min": 3.0e-3, "max": 3.0e-2, "sampling": "log"})
    # enough capacity and steps in 1-3 epochs to tell a good configuration from chance: with the
    # global-average head a good configuration was still near chance after one epoch (0.09-0.24), so
    # which trial Hyperband promoted hung on a validation image or two; with flatten it reaches 0.8
    for key, value in {"batch_size": 16, "filters": 16, "batch_norm": True, "head": "flatten"}.items():
        monkeypatch.setitem(TINY_SPACE, key, value)
    bad = {"init": "zeros", "optimizer": "rmsprop", "learning_rate": 3.0e-3}
    params = tiny_params(tmp_path, tuner="bohb", initial_points=[bad])
    uri = configure(params)
    tune(params, hypermodel(params), tiny_data(900), "fp-test", tracking_uri=uri,
         hp_names=list(type(params.search_space).model_fields), out_dir=tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["best_initial_trial"] == "0000" and metrics["best_initial_score"] < 0.3  # chance: 0.1
    assert metrics["initial_point_won"] is False and metrics["search_gain"] > 0.05
    assert metrics["best_trial"] != "0000" and metrics["search_gain_epochs"] == 3
    parent = parent_runs(uri)[0]
    run = MlflowClient(uri).get_run(parent.info.run_id)
    assert run.data.metrics["search_gain"] == pytest.approx(metrics["search_gain"])
    assert run.data.tags["initial_point_won"] == "false"


def test_report_says_when_the_time_budget_stopped_the_search(tmp_path: Path) -> None:
    records = [record("0000", 0.97, -1, 9), record("0001", 0.98, 0, 9)]
    figures = search_gain(records, "val_accuracy", 9).metrics()
    budget = {"trials": 17, "time_budget_s": 1800.0, "time_spent_s": 1782.4, "stopped_by_budget": 1.0}
    doc = Document("r")
    write_section(doc, _write(tmp_path / "metrics.json", {**figures, **budget}), None)
    assert ("tune.time_budget (30:00) stopped the search after 29:42, with 17 trial(s) run: the figures below are "
            "what those trials reached, not a finished search") in to_markdown(doc)
    doc = Document("r")  # a budget that did not stop the search: nothing to say
    write_section(doc, _write(tmp_path / "metrics.json", {**figures, **budget, "stopped_by_budget": 0.0}), None)
    assert "stopped the search" not in to_markdown(doc)
