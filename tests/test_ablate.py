"""The ablate stage: paired statistics, verdicts, the variants planned, and a tiny ablation end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.ablation.stats import (
    ablation_verdicts,
    choice_verdict,
    effects,
    family_verdict,
    paired_difference,
    verdict_id,
)
from pipeline.config import load_params, parse_params
from pipeline.errors import ConfigError
from pipeline.hparams import Choice, Fixed, HParam
from pipeline.verdicts import ABLATION, AT_CHANCE, NO_CLEAR_DIFFERENCE, WINNER
from tests.conftest import copy_project, run_cli, write_params

BEST = [0.97, 0.95, 0.99, 0.96]


# ------------------------------------------------------------------ paired statistics on planted numbers
def test_a_variant_always_worse_is_significant_with_the_right_sign_and_interval() -> None:
    noise = np.array([0.004, -0.003, 0.002, -0.001])
    worse = list(np.array(BEST) - 0.1 + noise)
    pair = paired_difference(worse, BEST)
    assert pair.mean == pytest.approx(-0.1 + noise.mean())
    assert pair.p_value < 0.001
    assert pair.low < pair.mean < pair.high < 0  # the whole interval below zero: worse, surely
    assert pair.clear(min_effect=0.02)

    verdict = choice_verdict("optimizer", {"adam": BEST, "sgd": worse}, min_effect=0.02)
    assert verdict.kind == WINNER and verdict.winner == "adam" and verdict.evidence == ABLATION
    assert verdict.unit == "runs" and verdict.n == 8 and "paired t-test" in verdict.test


def test_exactly_0_1_worse_at_every_seed_has_no_spread_and_p_zero() -> None:
    pair = paired_difference([b - 0.1 for b in BEST], BEST)
    assert pair.mean == pytest.approx(-0.1) and pair.p_value == 0.0
    assert pair.low == pytest.approx(-0.1) and pair.high == pytest.approx(-0.1)


def test_identical_runs_are_no_clear_difference() -> None:
    pair = paired_difference(BEST, BEST)
    assert (pair.mean, pair.p_value, pair.low, pair.high) == (0.0, 1.0, 0.0, 0.0)
    verdict = choice_verdict("architecture", {"vgg": BEST, "plain": list(BEST)}, min_effect=0.0)
    assert verdict.kind == NO_CLEAR_DIFFERENCE and verdict.winner is None


def test_noise_is_no_clear_difference() -> None:
    verdict = choice_verdict("architecture", {"vgg": BEST, "plain": [0.99, 0.93, 0.98, 0.97]}, min_effect=0.0)
    assert verdict.kind == NO_CLEAR_DIFFERENCE and verdict.p_value > 0.05


def test_a_consistent_difference_below_min_effect_is_not_a_winner() -> None:
    slightly = [b - 0.004 for b in BEST]  # one image in 270, at every seed: p = 0, but it says nothing
    verdict = choice_verdict("architecture", {"vgg": BEST, "plain": slightly}, min_effect=0.02)
    assert verdict.kind == NO_CLEAR_DIFFERENCE and "min_effect" in verdict.note


def test_a_winner_must_beat_every_other_value() -> None:
    groups = {"adam": BEST, "sgd": [b - 0.2 for b in BEST], "rmsprop": [0.98, 0.94, 0.99, 0.97]}
    verdict = choice_verdict("optimizer", groups, min_effect=0.02)
    assert verdict.kind == NO_CLEAR_DIFFERENCE  # adam beats sgd, but not rmsprop


def test_he_vs_glorot_and_the_gap_are_family_comparisons() -> None:
    verdict = family_verdict("he_vs_glorot", {"He": {"he_normal": BEST},
                                              "Glorot": {"glorot_uniform": [b - 0.05 for b in BEST]}}, 0.02)
    assert verdict.kind == WINNER and verdict.winner == "He"
    gap = family_verdict("regularization_gap.dropout", {"with dropout": {"0.25": [0.01, 0.02, 0.01, 0.015]},
                                                        "without dropout": {"0": [0.06, 0.07, 0.065, 0.07]}},
                         0.02, higher_is_better=False)
    assert gap.kind == WINNER and gap.winner == "with dropout"  # the smaller gap wins
    assert family_verdict("he_vs_glorot", {"He": {"he_normal": BEST}, "Glorot": {}}, 0.02) is None


def _runs(best_values: dict, seeds: list[int]) -> list[dict]:
    """Records as an ablation's runs write them: zeros at chance, sgd clearly worse, glorot the same as he."""
    rng = np.random.default_rng(0)
    table = {(None, None): 0.97, ("init", "zeros"): 0.1, ("init", "glorot_uniform"): 0.97,
             ("optimizer", "sgd"): 0.85, ("baseline", "plain_sgd"): 0.8, ("dropout", 0.0): 0.97}
    runs = []
    for (dimension, value), mean in table.items():
        for seed in seeds:
            score = mean + (0.0 if value == "zeros" else rng.normal(0, 0.004))
            gap = 0.06 if value == 0.0 else 0.01
            runs.append({"variant": f"{dimension}={value}", "dimension": dimension, "value": value, "seed": seed,
                         "status": "FINISHED", "val_accuracy": score, "test_accuracy": score, "gap": gap})
    return runs


def test_ablation_verdicts_answer_the_guides_questions() -> None:
    best_values = {"init": "he_normal", "optimizer": "adam", "dropout": 0.25, "activation": "relu"}
    seeds = [0, 1, 2]
    verdicts = {v.question: v for v in ablation_verdicts(_runs(best_values, seeds), best_values, seeds, 10, 0.02,
                                                         baselines={"plain_sgd": {"optimizer": "sgd"}})}
    assert verdicts["zero_init"].kind == AT_CHANCE
    assert verdicts["he_vs_glorot"].kind == NO_CLEAR_DIFFERENCE
    assert verdicts["optimizer"].kind == WINNER and verdicts["optimizer"].winner == "adam"
    assert verdicts["baseline.plain_sgd"].winner == "best configuration"
    assert verdicts["regularization_gap.dropout"].winner == "with dropout"
    assert "hp.init" not in verdicts  # one verdict per question: init's answer is he_vs_glorot's
    # dropout's declared question is about the gap; which dropout is best on accuracy is answered too, apart
    assert verdicts["hp.dropout"].kind == NO_CLEAR_DIFFERENCE and "gap" not in verdicts["hp.dropout"].note
    assert verdicts["hp.dropout"].p_value != verdicts["regularization_gap.dropout"].p_value
    assert all(v.evidence == ABLATION and v.unit == "runs" for v in verdicts.values())
    found = {(e["dimension"], e["value"]): e for e in effects(_runs(best_values, seeds), seeds, ["val_accuracy"], 0.02)}
    assert found[("optimizer", "sgd")]["clear"] and found[("optimizer", "sgd")]["val_accuracy"]["mean"] < -0.1


def test_he_vs_glorot_is_answered_for_a_best_configuration_initialized_otherwise() -> None:
    """Seed 0's search picked random_normal: the ablation then runs both He and Glorot and compares them."""
    from pipeline.ablation.plan import plan_variants

    best_values = {"init": "random_normal", "activation": "relu"}
    variants, _ = plan_variants(best_values, {"init": ["zeros", ["glorot_uniform", "he_normal"]]})
    assert [v.name for v in variants] == ["best", "init=zeros", "init=glorot_uniform", "init=he_normal"]
    rng = np.random.default_rng(1)
    means = {(None, None): 0.97, ("init", "zeros"): 0.1, ("init", "glorot_uniform"): 0.90, ("init", "he_normal"): 0.97}
    runs = [{"variant": f"{d}={v}", "dimension": d, "value": v, "seed": seed, "status": "FINISHED",
             "val_accuracy": mean + rng.normal(0, 0.004)} for (d, v), mean in means.items() for seed in (0, 1, 2)]
    verdicts = {v.question: v for v in ablation_verdicts(runs, best_values, [0, 1, 2], 10, 0.02)}
    assert verdicts["he_vs_glorot"].kind == WINNER and verdicts["he_vs_glorot"].winner == "He"
    assert verdicts["zero_init"].kind == AT_CHANCE and "hp.init" not in verdicts


def test_the_report_and_the_ablation_read_one_declaration_of_the_questions() -> None:
    from pipeline import questions
    from pipeline.report import questions as report_questions

    assert report_questions.verdict_id is questions.verdict_id is verdict_id
    assert not hasattr(report_questions, "OWN_QUESTION")
    assert [verdict_id(n) for n in ("init", "optimizer", "lr_schedule", "dropout")] == [
        "hp.init", "optimizer", "lr_schedule", "hp.dropout"]


# ------------------------------------------------------------------ variants and configuration
def test_variants_skip_the_best_configurations_own_values() -> None:
    from pipeline.ablation.plan import plan_variants

    best = {"init": "he_normal", "optimizer": "sgd", "lr_schedule": "constant", "dropout": 0.0}
    variants, skipped = plan_variants(best, {"init": ["zeros", "he_normal"], "dropout": [0, 0.25],
                                             "lr_schedule": [("constant", "cosine")]},
                                      {"plain_sgd": {"optimizer": "sgd", "lr_schedule": "constant"}})
    # [constant, cosine] as a group: its first value that differs from the best's own
    assert [v.name for v in variants] == ["best", "init=zeros", "dropout=0.25", "lr_schedule=cosine"]
    assert variants[1].values == {**best, "init": "zeros"} and variants[1].changes == {"init": "zeros"}
    assert [(s["dimension"], s["value"]) for s in skipped] == [("init", "he_normal"), ("dropout", 0),
                                                               ("baseline", "plain_sgd")]


def test_work_is_shared_by_graph_and_duplicates_train_once() -> None:
    from pipeline.ablation import plan

    best = {"init": "he_normal", "optimizer": "nesterov", "lr_schedule": "constant", "dropout": 0.0}
    variants, _ = plan.plan_variants(best, {"init": ["zeros"], "optimizer": ["sgd"], "lr_schedule": ["cosine"],
                                            "dropout": [0.25]},
                                     {"plain_sgd": {"optimizer": "sgd", "lr_schedule": "constant"}})
    unique, aliases = plan.unique_variants(variants)
    assert aliases == {"baseline=plain_sgd": "optimizer=sgd"}  # the best already runs at a constant rate
    by_name = {v.name: v for v in unique}
    best_graph, sgd_graph = (plan.graph_key(by_name[n].values) for n in ("best", "optimizer=sgd"))
    # init and schedule change no graph: they train in the best configuration's model
    assert {plan.graph_key(by_name[n].values) for n in ("best", "init=zeros", "lr_schedule=cosine")} == {best_graph}
    pending = [(v, seed) for v in unique for seed in (0, 1)]

    def taken(index: int, runs: list = pending) -> tuple[str, int]:
        return runs[index][0].name, runs[index][1]

    # nothing traced yet: the first run of the graph with the most runs (the best's: 3 variants x 2 seeds)
    assert taken(plan.next_run(pending, set(), set())) == ("best", 0)
    # a second worker while the first holds that graph: a graph nobody traced (the largest left, in plan order)
    assert taken(plan.next_run(pending, set(), {best_graph})) == ("optimizer=sgd", 0)
    # a worker keeps to the graphs it traced, its model reused
    assert taken(plan.next_run(pending[::-1], {sgd_graph}, {best_graph, sgd_graph}), pending[::-1]) == (
        "optimizer=sgd", 1)
    # its own graphs done and every graph traced: it helps with the one that has the most runs left
    rest = [run for run in pending if run[0].name != "optimizer=sgd"]
    assert taken(plan.next_run(rest, {sgd_graph}, {best_graph, sgd_graph}), rest) == ("dropout=0.25", 0)  # untraced
    every = {plan.graph_key(v.values) for v in unique}
    assert taken(plan.next_run(rest, {sgd_graph}, every), rest) == ("best", 0)
    runs = [{"variant": v.name, "seed": seed, "val_accuracy": 0.5} for v in unique for seed in (0, 1)]
    everything = plan.with_duplicates(variants, aliases, runs, [0, 1])
    assert [(r["variant"], r["seed"]) for r in everything][-2:] == [("baseline=plain_sgd", 0),
                                                                    ("baseline=plain_sgd", 1)]
    assert everything[-1]["same_as"] == "optimizer=sgd" and everything[-1]["dimension"] == "baseline"


def test_bad_ablation_params_fail_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({"ablate": {"dimensions": {"init": ["ones"]}}})
    assert caught.value.lines == [
        "params.yaml: ablate.dimensions: init: 'ones' is not allowed; allowed: zeros, random_normal, random_uniform, "
        "glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal"]
    # a value outside the search's choices but allowed for the key is fine
    assert parse_params({"ablate": {"dimensions": {"optimizer": ["nesterov"]}}}).ablate.dimensions == {
        "optimizer": ("nesterov",)}


def test_cli_rejects_a_bad_value_with_exit_2(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    result = run_cli(["ablate", "-S", "ablate.baselines={x: {lr_schedule: linear}}"], cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: params.yaml: ablate.baselines: lr_schedule: 'linear' is not allowed")
    assert len(result.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ the stage end to end
def _best_hparams(project: Path) -> None:
    """best_hparams.json as tune writes it, from params.yaml's first initial point (no search needed)."""
    params = load_params(project / "params.yaml")

    def first(spec: HParam) -> object:
        return spec.value if isinstance(spec, Fixed) else spec.choices[0] if isinstance(spec, Choice) else spec.min

    values = {name: first(getattr(params.search_space, name)) for name in type(params.search_space).model_fields}
    values.update(params.tune.initial_points[0])
    tune = project / "results" / "tune"
    tune.mkdir(parents=True, exist_ok=True)
    (tune / "best_hparams.json").write_text(json.dumps({"trial_id": "0007", "search_run_id": None, "score": 0.9,
                                                        "objective": "val_accuracy", "values": values}))
    from tests.test_report_build import synthetic_trials

    trials, history = synthetic_trials(params, n=12)
    trials.to_csv(tune / "trials.csv", index=False)
    history.to_csv(tune / "history.csv", index=False)


@pytest.mark.slow
def test_tiny_ablation_runs_logs_nested_runs_and_the_report_cites_it(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")
    # ablate.epochs null (the shipped default): the final budget, train.epochs; the smallest rate grid that
    # still re-tunes (two rates for AdamW, the best configuration's optimizer), in-process (one TensorFlow start)
    write_params(project, data={"max_samples": 200}, train={"epochs": 2},
                 ablate={"seeds": 2, "max_seeds": 2, "epochs": None, "rate_epochs": 1, "workers": 1,
                         "learning_rates": {"adaptive": [0.003, 0.01], "sgd": [0.03]},
                         "dimensions": {"init": ["zeros"]}, "baselines": {}})
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}", "TF_CPP_MIN_LOG_LEVEL": "2",
           "MPLBACKEND": "Agg"}
    assert run_cli(["preprocess"], cwd=project, env=env).returncode == 0
    _best_hparams(project)

    result = run_cli(["ablate"], cwd=project, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    out = project / "results" / "ablate"
    results = json.loads((out / "results.json").read_text())
    assert results["epochs"] == 2 and results["rate_epochs"] == 1
    selection = [(r["variant"], r["seed"]) for r in results["runs"] if r["phase"] == "rate"]
    assert selection == [("best@lr=0.003", 100042), ("best@lr=0.01", 100042), ("init=zeros@lr=0.003", 100042),
                         ("init=zeros@lr=0.01", 100042)]  # selection seeds are not verdict seeds
    verdict_runs = [r for r in results["runs"] if r["phase"] == "verdict"]
    assert [(r["variant"], r["seed"]) for r in verdict_runs] == [("best", 42), ("best", 43), ("init=zeros", 42),
                                                                 ("init=zeros", 43)]
    for run in verdict_runs:  # each side at the rate its own selection runs chose
        assert run["learning_rate"] == results["rates"][run["variant"]]["rate"] in (0.003, 0.01)
    assert results["effects"][0]["rates"]["retuned"] and results["effects"][0]["val_accuracy"]["n"] == 2
    assert (out / "effects.png").stat().st_size > 1000
    verdicts = {v["question"]: v for v in json.loads((out / "verdicts.json").read_text())["verdicts"]}
    assert verdicts["zero_init"]["kind"] == AT_CHANCE and verdicts["zero_init"]["evidence"] == ABLATION

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = client.get_run(results["mlflow"]["run_id"])
    assert parent.info.run_name.startswith("ablation-") and parent.info.status == "FINISHED"
    assert parent.data.tags["run_type"] == "ablation" and parent.data.params["seeds"] == "42,43"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((c.data.params["dimension"], c.data.params["value"], c.data.params["seed"]) for c in children
                  if c.data.params["seed"] in ("42", "43")) == [
        ("(best)", "(best)", "42"), ("(best)", "(best)", "43"), ("init", "zeros", "42"), ("init", "zeros", "43")]
    assert len(children) == 8  # and the 4 selection runs
    assert all(c.info.status == "FINISHED" and "val_accuracy" in c.data.metrics for c in children)
    assert {c.data.tags["ablation_dimension"] for c in children} == {"(best)", "init"}

    assert run_cli(["report"], cwd=project, env=env).returncode == 0
    report = (project / "results" / "report" / "report.md").read_text()
    assert "Controlled ablation" in report and "ablation evidence" in report
    assert "learning rate is a nuisance hyperparameter" in report and "95% CI" in report
    html = (project / "results" / "report" / "report.html").read_text()
    assert 'alt="ablation: effect of each change' in html and "data:image/png;base64," in html
    assert (project / "results" / "report" / "figures" / "ablation_effects.png").is_file()
    report_verdicts = {v["question"]: v for v in
                       json.loads((project / "results" / "report" / "verdicts.json").read_text())["verdicts"]}
    assert report_verdicts["zero_init"]["evidence"] == ABLATION

    # switched off: nothing trained, and the report falls back to the search's evidence
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ablate"]["enabled"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_cli(["ablate"], cwd=project, env=env)
    assert result.returncode == 0 and "skipped (ablate.enabled: false)" in result.stdout
    assert json.loads((out / "verdicts.json").read_text())["verdicts"] == []
    assert not (out / "effects.png").exists()
    assert run_cli(["report"], cwd=project, env=env).returncode == 0
    report = (project / "results" / "report" / "report.md").read_text()
    assert "ablation evidence" not in report
    assert "No controlled ablation (ablate.enabled is false): every verdict above rests on the search's evidence" \
        in report
    report_verdicts = json.loads((project / "results" / "report" / "verdicts.json").read_text())["verdicts"]
    assert {v["evidence"] for v in report_verdicts} == {"search"}


# A small configuration with every key of the search space, for ablation runs on a few digits.
TINY_BEST = {"architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap", "dense_units": 0,
             "activation": "relu", "init": "he_normal", "init_stddev": 0.05, "regularizer": "none",
             "reg_strength": 1e-4, "dropout": 0.25, "batch_norm": True, "weight_decay": 1e-4, "optimizer": "adam",
             "momentum": 0.9, "learning_rate": 0.01, "lr_schedule": "cosine", "step_decay_factor": 0.5,
             "step_decay_epochs": 3, "exp_decay_rate": 0.8, "cosine_floor": 0.01, "restart_epochs": 3,
             "restart_mult": 2.0, "warmup_epochs": 1, "augment_translate": 0.0, "augment_rotate": 0.0,
             "augment_zoom": 0.0, "augment_flip": False, "label_smoothing": 0.0, "batch_size": 32}


# ------------------------------------------------------------------ shared models train as fresh ones
@pytest.mark.slow
def test_a_reused_model_trains_exactly_like_a_fresh_one() -> None:
    """Runs share models (per variant, and across variants of the same graph) only to save tracing."""
    from sklearn.datasets import load_digits

    from pipeline.ablation.runs import Splits, Trainer, model_builder, plan_variants

    x, y = load_digits(return_X_y=True)
    x = ((x - 8.0) / 8.0).reshape(-1, 8, 8, 1).astype("float32")[:360]
    y = y.astype("int64")[:360]
    data = Splits(x[:240], y[:240], x[240:300], y[240:300], x[300:], y[300:])
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    best = TINY_BEST
    build = model_builder(params.search_space, (8, 8, 1), 10, epochs=2)
    variants, _ = plan_variants(best, {"init": ["glorot_uniform"], "lr_schedule": ["constant"], "dropout": [0.0]})

    def run(chosen: list, seeds: list[int]) -> list[dict]:  # in a Trainer of their own, closed after
        trainer = Trainer(lambda _epochs: build, data)
        try:
            return trainer.run(chosen, seeds, 2)
        finally:
            trainer.close()

    shared = {(r["variant"], r["seed"]): r["val_loss"] for r in run(variants, [1, 2])}
    assert len(set(shared.values())) == len(shared)  # every run its own result: the check below means something
    for variant in variants:  # each alone, at the second seed: a freshly built model
        alone = run([variant], [2])[0]
        assert alone["val_loss"] == shared[(variant.name, 2)], variant.name


@pytest.mark.slow
def test_worker_processes_give_the_runs_of_one_process_over_several_rounds(tmp_path: Path) -> None:
    """The stage's default (``ablate.workers: 2``): two processes kept up across rounds, a round's runs
    shared by graph or, with one graph, by seed; every record as the same runs in this process give."""
    from sklearn.datasets import load_digits

    from pipeline.ablation.runs import Splits, Trainer, model_builder, plan_variants
    from pipeline.ablation.workers import WorkerPool
    from pipeline.data import store

    x, y = load_digits(return_X_y=True)
    x = ((x - 8.0) / 8.0).reshape(-1, 8, 8, 1).astype("float32")[:200]
    y = y.astype("int64")[:200]
    for split, rows in (("train", slice(0, 120)), ("validation", slice(120, 160)), ("test", slice(160, 200))):
        store.save_split(tmp_path, split, x[rows], y[rows])
    store.save_meta(tmp_path, {"input_shape": [8, 8, 1], "num_classes": 10})
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    variants, _ = plan_variants({**TINY_BEST, "filters": 4}, {"init": ["glorot_uniform"], "dropout": [0.0]})
    rounds = [(variants, [1, 2], 1), (variants[:2], {"best": [3, 4], "init=glorot_uniform": [3, 4]}, 2)]

    data = Splits(*store.load_split(tmp_path, "train"), *store.load_split(tmp_path, "validation"),
                  *store.load_split(tmp_path, "test"))
    trainer = Trainer(lambda epochs: model_builder(params.search_space, (8, 8, 1), 10, epochs), data)
    alone = [trainer.run(*round_) for round_ in rounds]
    trainer.close()
    seen: list[dict] = []
    with WorkerPool(2, search_space=params.search_space.model_dump(mode="json"), data_dir=str(tmp_path),
                    tracking=None) as pool:
        pooled = [pool.run(*round_, on_run=seen.append) for round_ in rounds]
        pids = {worker.popen.pid for worker in pool.workers}
    assert len(pids) == 2 and len(seen) == 6 + 4  # every run reported as it finished
    for mine, theirs in zip(alone, pooled, strict=True):
        assert [(r["variant"], r["seed"]) for r in theirs] == [(r["variant"], r["seed"]) for r in mine]
        for a, b in zip(mine, theirs, strict=True):
            assert b["status"] == "FINISHED"
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4), (a["variant"], a["seed"])


def test_a_failing_worker_stops_the_pool_with_its_last_lines(tmp_path: Path) -> None:
    from pipeline.ablation.plan import Variant
    from pipeline.ablation.workers import WorkerPool
    from pipeline.errors import PipelineError

    # no processed data in tmp_path: each worker fails while it loads it, before any job
    with pytest.raises(PipelineError) as caught, WorkerPool(2, search_space={}, data_dir=str(tmp_path),
                                                            tracking=None) as pool:
        pool.run([Variant(None, None, {"optimizer": "adam"}, {})], [1], 1)
    assert caught.value.lines[0].startswith("ablation worker") and "failed (exit code 1)" in caught.value.lines[0]
    assert any("meta" in line or "No such file" in line for line in caught.value.lines[1:]), caught.value.lines


def test_the_report_leaves_out_the_ablation_of_another_best_configuration(tmp_path: Path) -> None:
    from pipeline.ablation.section import section
    from pipeline.report.render import Document, to_markdown

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"enabled": True, "trial_id": "0003", "search_run_id": "old",
                                   "metric": "val_accuracy", "seeds": [42, 43], "epochs": 2, "effects": []}))
    doc = Document("r")
    summary = section(doc, results, tmp_path / "figures", {"trial_id": "0007", "search_run_id": "new"})
    assert summary["evidence"] == "search"
    assert "the ablation of another best configuration (search_run_id and trial_id differ)" in to_markdown(doc)
