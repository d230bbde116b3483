"""The report stage end to end on synthetic trials (no TensorFlow, no search)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import parse_params
from pipeline.errors import PipelineError
from pipeline.report import Inputs, build_report

BOOTSTRAPS = 8  # enough for the planted effect, keeps each test around a second


def _sample(space, rng: np.random.Generator) -> dict:
    values = {}
    for name in type(space).model_fields:
        spec = getattr(space, name)
        if hasattr(spec, "choices"):
            values[name] = spec.choices[rng.integers(len(spec.choices))]
        elif hasattr(spec, "min"):
            if spec.sampling == "log":
                values[name] = float(10 ** rng.uniform(np.log10(spec.min), np.log10(spec.max)))
            elif spec.step:
                grid = np.arange(spec.min, spec.max + 1e-9, spec.step)
                values[name] = grid[rng.integers(len(grid))].item()
            else:
                values[name] = float(rng.uniform(spec.min, spec.max))
        else:
            values[name] = spec.value
    return values


def synthetic_trials(params, n: int = 40, planted: tuple[str, str] | None = ("optimizer", "adam"),
                     effect: float = 0.35, fail_every: int = 0, zeros_at_chance: bool = False,
                     seed: int = 0, continue_every: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trials.csv and history.csv as the tune stage writes them, with one planted effect.

    Every ``continue_every``-th trial continues the one before it as Hyperband does: the same
    hyperparameters, a later round and a larger budget.
    """
    rng = np.random.default_rng(seed)
    rows, history = [], []
    for i in range(n):
        parent = rows[-1] if continue_every and i % continue_every == continue_every - 1 and rows else None
        if parent is not None:
            values = {k.removeprefix("hp."): v for k, v in parent.items() if k.startswith("hp.")}
        else:
            values = _sample(params.search_space, rng)
        val_acc = 0.55 + rng.normal(0, 0.03)
        if planted and values.get(planted[0]) == planted[1]:
            val_acc += effect
        if zeros_at_chance and values.get("init") == "zeros":
            val_acc = 0.1 + rng.normal(0, 0.005)
        gap = 0.02 if values.get("regularizer") == "l2" else 0.08
        failed = fail_every and i % fail_every == fail_every - 1
        start = int(parent["target_epochs"]) if parent is not None else 0
        epochs = int(rng.integers(2, 6))
        row = {"trial_id": f"{i:04d}", "status": "FAILED" if failed else "FINISHED",
               "score": None if failed else val_acc, "objective": "val_accuracy", "bracket": 0,
               "round": 0 if parent is None else parent["round"] + 1,
               "continued_from": None if parent is None else parent["trial_id"], "initial_epoch": start,
               "target_epochs": start + epochs, "epochs_trained": epochs, "best_epoch": start + epochs - 1,
               "seconds": 1.0, "seconds_per_epoch": 0.3, "params_count": 1000, "run_id": f"run{i}",
               "accuracy": None if failed else val_acc + gap, "val_accuracy": None if failed else val_acc,
               "loss": 0.5, "val_loss": 0.6}
        row.update({f"hp.{k}": v for k, v in values.items()})
        rows.append(row)
        lr = values.get("learning_rate", 1e-3)
        for epoch in range(start, start if failed else start + epochs):
            decay = 1.0 if values.get("lr_schedule") == "constant" else 0.7 ** epoch
            history.append({"trial_id": f"{i:04d}", "epoch": epoch, "loss": 1 / (epoch + 1),
                            "accuracy": val_acc * (epoch + 1) / (start + epochs) + gap,
                            "val_loss": 1.2 / (epoch + 1),
                            "val_accuracy": val_acc * (epoch + 1) / (start + epochs), "learning_rate": lr * decay})
    return pd.DataFrame(rows), pd.DataFrame(history)


def write_inputs(tmp_path: Path, trials: pd.DataFrame, history: pd.DataFrame | None = None,
                 num_classes: int | None = 10) -> Inputs:
    tune = tmp_path / "tune"
    tune.mkdir(exist_ok=True)
    trials.to_csv(tune / "trials.csv", index=False)
    if history is not None:
        history.to_csv(tune / "history.csv", index=False)
    (tune / "best_hparams.json").write_text(json.dumps({"tuner": "hyperband", "search_run_id": "abc"}))
    meta = tmp_path / "meta.json"
    if num_classes:
        meta.write_text(json.dumps({"num_classes": num_classes}))
    return Inputs(tune / "trials.csv", tune / "history.csv", tune / "best_hparams.json", meta)


def report(params, inputs: Inputs, out: Path) -> dict:
    return build_report(params.search_space, params.report.min_trials_per_choice, params.report.top_trials,
                        inputs, out, default_objective=params.tune.objective, bootstraps=BOOTSTRAPS)


SMALL_SPACE = {  # four searched dimensions keep the tests fast; the rest fixed
    "optimizer": {"choices": ["sgd", "adam", "rmsprop"]},
    "init": {"choices": ["zeros", "glorot_uniform", "he_normal"]},
    "regularizer": {"choices": ["none", "l2"]},
    "learning_rate": {"min": 1e-4, "max": 1e-1, "sampling": "log"},
    "lr_schedule": {"choices": ["constant", "cosine"]},
    "architecture": "plain", "blocks": 2, "filters": 16, "kernel_size": 3, "head": "gap", "dense_units": 32,
    "reg_strength": 1e-4, "dropout": 0.0, "batch_norm": True, "weight_decay": 1e-4, "batch_size": 32,
}


@pytest.fixture
def params():
    return parse_params({"search_space": SMALL_SPACE})


def test_planted_effect_ranks_first_and_is_named_best(tmp_path, params):
    trials, history = synthetic_trials(params, n=48)
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history), out)

    assert summary["importance"]["ranking"][0]["name"] == "optimizer"
    answer = summary["answers"]["optimizer"]
    assert (answer["kind"], answer["winner"], answer["test"]) == ("winner", "adam", "Kruskal-Wallis")
    assert answer["p_value"] < 0.05 and answer["verdict"].startswith("adam (Kruskal-Wallis p")
    assert summary["best_value"]["optimizer"] == "adam"
    md = (out / "report.md").read_text()
    assert "adam ranks best and the optimizers differ clearly" in md
    assert "ranks optimizer first" in md
    for name in ("objective_by_optimizer.png", "importance.png", "curves_top_trials.png", "curves_by_init.png",
                 "lr_vs_objective.png", "lr_schedules.png"):
        assert (out / "figures" / name).is_file(), name
        assert f"](figures/{name})" in md


def test_planted_effect_on_another_dimension_and_val_loss_objective(tmp_path, params):
    trials, history = synthetic_trials(params, n=48, planted=("lr_schedule", "cosine"), seed=3)
    trials["objective"] = "val_loss"
    trials["score"] = 1 - trials["score"]  # lower is better now: cosine must still win
    summary = report(params, write_inputs(tmp_path, trials, history), tmp_path / "report")

    assert summary["direction"] == "min"
    assert summary["importance"]["ranking"][0]["name"] == "lr_schedule"
    assert summary["answers"]["lr_schedule"]["winner"] == "cosine"


def test_fixed_dimension_says_so(tmp_path, params):
    trials, history = synthetic_trials(params, n=30)
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history), out)

    md = (out / "report.md").read_text()
    assert "## architecture\n\nFixed at plain (not searched)." in md
    assert summary["answers"]["architecture"]["kind"] == "not_searched"
    assert summary["answers"]["architecture"]["verdict"] == "not searched (fixed at plain)"
    assert "architecture was fixed at plain" in summary["answers"]["architecture"]["text"]
    assert summary["fixed"]["architecture"] == "plain"
    assert not (out / "figures" / "objective_by_architecture.png").exists()


def test_html_is_one_file_with_embedded_images(tmp_path, params):
    trials, history = synthetic_trials(params, n=30)
    out = tmp_path / "report"
    report(params, write_inputs(tmp_path, trials, history), out)

    page = (out / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    pngs = sorted(out.glob("figures/*.png"))
    assert len(sources) == len(pngs) > 3
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in page and "<link" not in page and "<script" not in page


def test_zero_init_at_chance_and_regularization_gap(tmp_path, params):
    trials, history = synthetic_trials(params, n=60, zeros_at_chance=True, seed=1)
    summary = report(params, write_inputs(tmp_path, trials, history), tmp_path / "report")

    zero = summary["answers"]["zero_init"]
    assert zero["kind"] == "at_chance" and zero["test"] == "chance margin 0.05"
    assert "chance level" in zero["text"].lower() and "0.100" in zero["text"]
    gap = summary["answers"]["regularization_gap"]
    assert (gap["kind"], gap["winner"]) == ("winner", "with regularizer")  # l2 planted with a smaller gap
    assert "regularizer clearly shrinks the gap" in gap["text"]


def test_zero_init_without_meta_leaves_chance_out(tmp_path, params):
    trials, history = synthetic_trials(params, n=40, zeros_at_chance=True, seed=2)
    summary = report(params, write_inputs(tmp_path, trials, history, num_classes=None), tmp_path / "report")

    assert summary["num_classes"] is None
    assert "unknown" in summary["answers"]["zero_init"]["text"]


@pytest.mark.parametrize("n", [1, 2])
def test_very_few_trials_say_not_enough(tmp_path, params, n):
    trials, history = synthetic_trials(params, n=n)
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history), out)

    assert summary["importance"]["ranking"] == []
    assert "not enough configurations" in (out / "report.md").read_text()
    assert summary["answers"]["optimizer"]["kind"] == "not_enough_data"
    assert (out / "report.html").is_file()


def test_searched_dimension_without_column_and_conditional_values(tmp_path, params):
    trials, history = synthetic_trials(params, n=20)
    trials = trials.drop(columns=["hp.regularizer"])
    trials.loc[trials.index[::2], "hp.learning_rate"] = None  # inactive conditional hyperparameter
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history), out)

    md = (out / "report.md").read_text()
    assert "trials.csv has no hp.regularizer column" in md
    assert "(not set)" in md
    assert "regularizer" not in summary["best_value"]


def test_failed_trials_and_missing_history(tmp_path, params):
    trials, _ = synthetic_trials(params, n=24, fail_every=3)
    out = tmp_path / "report"
    summary = report(params, write_inputs(tmp_path, trials, history=None), out)

    assert summary["failed"] == 8 and summary["finished"] == 16
    md = (out / "report.md").read_text()
    assert "history.csv is missing" in md
    assert re.search(r"\| \d+ \(\d+%\) \|", md)  # failure counts with rates in the per-choice tables


def test_every_trial_failed(tmp_path, params):
    trials, _ = synthetic_trials(params, n=4, fail_every=1)
    summary = report(params, write_inputs(tmp_path, trials), tmp_path / "report")

    assert summary["finished"] == 0 and summary["best_trial"] == {}


def test_default_search_space_runs(tmp_path):
    params = parse_params({})
    trials, history = synthetic_trials(params, n=30, fail_every=7)
    summary = report(params, write_inputs(tmp_path, trials, history), tmp_path / "report")

    assert summary["importance"]["uncertain"]  # 21 configurations for 16 searched dimensions
    assert set(summary["answers"]) >= {"zero_init", "he_vs_glorot", "lr_schedule", "regularization_gap",
                                       "optimizer", "architecture", "learning_rate"}


def test_missing_or_empty_trials_file_is_a_clear_error(tmp_path, params):
    inputs = Inputs(tmp_path / "nope.csv", tmp_path / "h.csv", tmp_path / "b.json", tmp_path / "m.json")
    with pytest.raises(PipelineError, match="not found; run `python -m pipeline tune`"):
        report(params, inputs, tmp_path / "report")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PipelineError, match="empty file"):
        report(params, Inputs(tmp_path / "empty.csv", inputs.history, inputs.best, inputs.meta), tmp_path / "report")
    (tmp_path / "header.csv").write_text("trial_id,status,score\n")
    with pytest.raises(PipelineError, match="no trials"):
        report(params, Inputs(tmp_path / "header.csv", inputs.history, inputs.best, inputs.meta), tmp_path / "r")


def test_stale_pictures_are_removed(tmp_path, params):
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "objective_by_gone.png").write_bytes(b"old")
    trials, history = synthetic_trials(params, n=10)
    summary = report(params, write_inputs(tmp_path, trials, history), out)
    assert not (out / "figures" / "objective_by_gone.png").exists()
    assert sorted(summary["images"]) == sorted(p.relative_to(out).as_posix() for p in out.glob("figures/*.png"))


def test_trials_file_cut_mid_row_is_refused(tmp_path, params):
    inputs = write_inputs(tmp_path, *synthetic_trials(params, n=12))
    text = inputs.trials.read_text()
    report(params, inputs, tmp_path / "whole")  # the whole file reads
    # cut inside the last row, as a full disk or a kill mid-write would
    inputs.trials.write_text(text[: text.rstrip("\n").rfind(",") - 3])
    with pytest.raises(PipelineError, match="last row is cut off"):
        report(params, inputs, tmp_path / "report")
