"""ablate.time_budget: the plan sized up front from the search's seconds per epoch; power seeds only where they fit.

Plain Python (no training): the planner, and ``run_experiment`` with a ``train`` that records what it
was asked to run and scores it from a seeded generator.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.ablation.budget import REASON, extra_seeds_that_fit, fit_plan, seconds_per_epoch, variant_cost
from pipeline.ablation.experiment import run_experiment
from pipeline.ablation.plan import plan_variants
from pipeline.config import parse_params
from pipeline.errors import ConfigError
from pipeline.time_budget import TimeBudget

BEST = {"init": "he_normal", "optimizer": "adamw", "learning_rate": 0.003, "lr_schedule": "cosine",
        "architecture": "vgg", "dropout": 0.25, "regularizer": "none"}


def _config(**ablate: object):
    return parse_params({"ablate": {"dimensions": {"init": ["zeros"], "optimizer": ["momentum"],
                                                   "architecture": ["plain"]}, "baselines": {}, **ablate}}).ablate


def test_a_variants_cost_counts_its_rate_selection_and_its_verdict_seeds() -> None:
    config = _config(seeds=3, rate_seeds=1, rate_epochs=10, workers=2)
    variants, _ = plan_variants(BEST, config.dimensions, config.baselines)
    # 3 verdict runs x 20 epochs + 3 rates x 10 epochs, at 1 s an epoch, plus 3 s start-up per run over 2 workers
    assert variant_cost(variants[0], config, 20, 1.0) == pytest.approx(3 * (20 + 1.5) + 3 * (10 + 1.5))
    assert variant_cost(variants[0], _config(retune_rate=False, workers=1), 20, 1.0) == pytest.approx(3 * 23)


def test_the_plan_keeps_the_best_and_the_variants_that_fit_in_order() -> None:
    config = _config(seeds=3, rate_epochs=10, workers=2)
    variants, _ = plan_variants(BEST, config.dimensions, config.baselines)
    one = variant_cost(variants[0], config, 20, 1.0)  # every variant costs the same here (3 rates each)
    kept, left_out, estimate = fit_plan(variants, config, 20, 1.0, seconds=2.5 * one)
    assert [v.base_name for v in kept] == ["best", "init=zeros"] and estimate == pytest.approx(2 * one)
    assert [(s["dimension"], s["value"]) for s in left_out] == [("optimizer", "momentum"), ("architecture", "plain")]
    assert all(s["reason"].startswith(REASON) for s in left_out)
    # the best configuration is kept even when nothing fits: without it there is nothing to compare
    kept, left_out, _ = fit_plan(variants, config, 20, 1.0, seconds=1.0)
    assert [v.base_name for v in kept] == ["best"] and len(left_out) == 3
    kept, left_out, _ = fit_plan(variants, config, 20, 1.0, seconds=10 * one)
    assert len(kept) == 4 and not left_out


def test_extra_seeds_are_added_in_order_while_they_fit() -> None:
    extra = {"best": [45, 46], "init=zeros": [45], "optimizer=momentum": [45, 46]}
    kept, dropped = extra_seeds_that_fit(extra, seconds_per_run=10.0, left=35.0, reference="best")
    assert kept == {"best": [45, 46], "init=zeros": [45]} and dropped == ["optimizer=momentum"]
    # the reference is priced first wherever it stands; without room for it, no variant's extra seed runs
    last = {"init=zeros": [45], "best": [45, 46]}
    assert extra_seeds_that_fit(last, 10.0, 25.0, "best") == ({"best": [45, 46]}, ["init=zeros"])
    assert extra_seeds_that_fit(last, 10.0, 15.0, "best") == ({}, ["best", "init=zeros"])


def test_the_price_is_the_best_trials_seconds_per_epoch(tmp_path: Path) -> None:
    trials = tmp_path / "trials.csv"
    trials.write_text("trial_id,seconds_per_epoch\n0003,0.8\n0007,1.25\n0009,\n")
    assert seconds_per_epoch(trials, "0007") == 1.25
    assert seconds_per_epoch(trials, "0009") is None and seconds_per_epoch(trials, "0042") is None
    assert seconds_per_epoch(tmp_path / "missing.csv", "0007") is None


def test_a_bad_ablation_budget_fails_validation_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="ablate.time_budget"):
        parse_params({"ablate": {"time_budget": "soon"}})
    assert parse_params({"ablate": {"time_budget": "2m"}}).ablate.time_budget == 120.0


def _fake_train(asked: list[tuple[str, tuple[int, ...], str]]):
    def train(variants, seeds, epochs, what):
        runs = []
        for variant in variants:
            mine = tuple(seeds.get(variant.name, ())) if isinstance(seeds, dict) else tuple(seeds)
            asked.append((variant.name, mine, what))
            for seed in mine:
                rng = random.Random(f"{variant.name}-{seed}")
                # noisy scores: the power rule asks for more seeds than the first three
                runs.append({"variant": variant.name, "dimension": variant.dimension, "value": variant.value,
                             "seed": seed, "phase": variant.phase, "learning_rate": variant.values["learning_rate"],
                             "status": "FINISHED", "val_accuracy": 0.9 + rng.uniform(-0.05, 0.05),
                             "test_accuracy": 0.9, "gap": 0.01})
        return runs
    return train


def test_power_seeds_that_do_not_fit_the_budget_are_not_run() -> None:
    config = _config(seeds=3, max_seeds=6, retune_rate=False, min_effect=0.01)
    variants, _ = plan_variants(BEST, config.dimensions, config.baselines)
    asked: list = []
    unlimited = run_experiment(variants, config, 42, 2, _fake_train(asked))
    assert any(n > 3 for n in unlimited.needed.values()) and not unlimited.power_dropped
    assert any(what == "seeds for power" for *_, what in asked)

    asked.clear()
    spent = TimeBudget(10.0, started=0.0)  # long spent: no room for any extra seed
    outcome = run_experiment(variants, config, 42, 2, _fake_train(asked), spent)
    assert not any(what == "seeds for power" for *_, what in asked)
    assert "best" in outcome.power_dropped and all(len(s) == 3 for s in outcome.seeds.values())


def test_the_best_configuration_alone_trains_nothing() -> None:
    config = _config(seeds=3, max_seeds=6)
    variants, _ = plan_variants(BEST, config.dimensions, config.baselines)
    asked: list = []
    outcome = run_experiment(variants[:1], config, 42, 2, _fake_train(asked))
    assert asked == [] and outcome.runs == [] and [v.name for v in outcome.variants] == ["best"]


@pytest.mark.slow
def test_the_stage_leaves_out_what_does_not_fit_and_says_so(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real stage on tiny data: a budget that holds no variant runs nothing (seen on 50,000 RGB images: with
    every variant left out of a 10-minute budget, the best configuration's own runs would have taken ~50 minutes)."""
    import json

    from conftest import write_params
    from test_ablate import _best_hparams

    from pipeline.cli import main

    write_params(project, data={"max_samples": 200}, train={"epochs": 1},
                 ablate={"seeds": 2, "max_seeds": 2, "epochs": None, "rate_epochs": 1, "workers": 1,
                         "learning_rates": {"adaptive": [0.003, 0.01], "sgd": [0.03]}, "time_budget": "1s",
                         "dimensions": {"init": ["zeros"], "architecture": ["plain"]}, "baselines": {}})
    assert main(["preprocess"]) == 0
    _best_hparams(project)  # trials.csv prices trial 0007's epochs at 0.3 s
    capsys.readouterr()
    assert main(["ablate"]) == 0
    out = capsys.readouterr().out
    assert "ablate: time budget 1 s (ablate.time_budget): 0 of 2 variant(s) fit" in out, out
    assert "skipped init=zeros: left out by ablate.time_budget" in out
    results = json.loads((project / "results/ablate/results.json").read_text())
    assert results["time_budget"]["left_out"] == ["init=zeros", "architecture=plain"]
    assert results["runs"] == [] and "ablate: 0 runs in" in out  # nothing to compare: nothing trained
    assert results["effects"] == [] and results["time_budget"]["budget_s"] == 1.0
