"""Every benchmark script runs in --smoke mode and writes its JSON shape; no timing is asserted.

The scripts run at the same time (each is mostly TensorFlow start-up and graph tracing),
each writing to a temp folder; BENCHMARKS.md must stay untouched by smoke runs. A searcher whose
optional library is missing is reported as skipped: the fair suite's smoke run checks that path
(the test extra installs neither DEHB nor SMAC3). ``search_efficiency.py`` (superseded by the fair
suite, BENCHMARKS.md §2b) is not smoke-run on its own: its runners are the suite's library, exercised by
the suite's smoke run below (6 of its searchers, both conditions, each in a process of its own).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("tracking_overhead", "throughput", "memory", "dvc_noop", "bn_momentum", "final_vs_recipe",
           "one_graph_steps", "fused_batch_norm")
SPECIFIC_KEYS = {
    "tracking_overhead": {"median_ratio", "ratios", "seconds", "repeats", "target_ratio", "met", "identical_trials",
                          "trials"},
    "throughput": {"ratio", "target", "met", "variants", "train_images", "config"},
    "memory": {"mode", "trials", "growth_mb", "peak_rss_mb", "samples", "target_growth_mb", "met", "restarts",
               "processes", "trials_per_process", "rss_timeline"},
    "dvc_noop": {"scope", "median_seconds", "seconds", "first_repro_seconds", "stages_rerun_in_noop"},
    "bn_momentum": {"commit", "epochs", "recipe", "momenta", "seeds", "summary", "runs"},
    "final_vs_recipe": {"commit", "tasks", "seeds", "images", "arms", "overrides", "runs", "below"},
    "one_graph_steps": {"commit", "epochs", "rounds", "configurations", "same_val_accuracy", "summary", "pairs"},
    "fused_batch_norm": {"commit", "epochs", "rounds", "configurations", "largest_val_accuracy_gap", "summary",
                         "pairs"},
}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg", "DVC_NO_ANALYTICS": "1"}


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, Path]]:
    out = tmp_path_factory.mktemp("bench")
    benchmarks_md = REPO / "BENCHMARKS.md"
    before = benchmarks_md.read_text() if benchmarks_md.exists() else None
    procs = {}
    for name in SCRIPTS:
        log = (out / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen([sys.executable, str(REPO / "bench" / f"{name}.py"), "--smoke",
                                         "--out", str(out / f"{name}.json")],
                                        cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT), log)
    results = {}
    for name, (proc, log) in procs.items():
        try:
            code = proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = -9
        log.close()
        results[name] = (code, (out / f"{name}.log").read_text()[-3000:], out / f"{name}.json")
    after = benchmarks_md.read_text() if benchmarks_md.exists() else None
    assert before == after, "a smoke run changed BENCHMARKS.md"
    return results


@pytest.mark.parametrize("name", SCRIPTS)
def test_smoke_writes_json_shape(smoke_results: dict[str, tuple[int, str, Path]], name: str) -> None:
    code, log, path = smoke_results[name]
    assert code == 0, log
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == name
    assert payload["smoke"] is True
    assert payload["command"].startswith(f"python bench/{name}.py") and "--smoke" in payload["command"]
    env = payload["environment"]
    for key in ("date", "nproc", "cpu_model", "ram_gb", "python", "versions", "load_average_start",
                "load_average_end"):
        assert key in env, key
    assert env["versions"]["tensorflow"] and env["versions"]["keras-tuner"]
    missing = SPECIFIC_KEYS[name] - set(payload)
    assert not missing, f"{name}: missing {sorted(missing)}"


def test_throughput_reports_every_variant(smoke_results: dict[str, tuple[int, str, Path]]) -> None:
    payload = json.loads(smoke_results["throughput"][2].read_text())
    assert set(payload["variants"]) >= {"plain", "tuner_trial"}
    for variant in payload["variants"].values():
        assert variant["images_per_second"] > 0 and variant["train_seconds"]


def test_memory_follows_the_cli_search_across_its_restart(smoke_results: dict[str, tuple[int, str, Path]]) -> None:
    payload = json.loads(smoke_results["memory"][2].read_text())
    assert payload["mode"] == "pipeline"
    assert payload["trials_per_process"] == 2 and payload["restarts"] >= 1  # 3 trials, 2 per process
    assert [s["trial"] for s in payload["samples"]] == [1, 2, 3]
    assert [s["process"] for s in payload["samples"]] == [1, 1, 2]
    assert all(s["rss_mb"] > 0 for s in payload["samples"]) and payload["peak_rss_mb"] > 0
    assert [p["trials"] for p in payload["processes"]] == [2, 1]


def test_tracking_overhead_compares_the_work_of_both_sides(smoke_results: dict[str, tuple[int, str, Path]]) -> None:
    payload = json.loads(smoke_results["tracking_overhead"][2].read_text())
    same = payload["identical_trials"]
    assert len(same["work_per_pair"]) == payload["repeats"] and isinstance(same["all_pairs"], bool)
    for side in ("tracked", "untracked"):
        assert len(payload["trials"][side]) == payload["repeats"]
        assert all(run and "epochs_trained" in run[0] for run in payload["trials"][side])


def test_final_vs_recipe_arms_differ_in_the_search_only(smoke_results: dict[str, tuple[int, str, Path]]) -> None:
    import yaml

    payload = json.loads(smoke_results["final_vs_recipe"][2].read_text())
    recipe = yaml.safe_load((REPO / "params.yaml").read_text())["tune"]["initial_points"][0]
    [run] = payload["runs"]
    default, alone = run["arms"]["default"], run["arms"]["recipe"]
    assert run["fingerprint"] and run["sizes"]["fresh"] > 0 and run["judged_on"] == "fresh"
    # the recipe arm's one trial is the recipe; the default arm searched beyond it
    assert alone["trials"] == 1 and default["trials"] > 1
    assert {k: alone["best_trial"]["values"][k] for k in recipe} == recipe
    # the same final-model protocol: train's seeds and epochs of the smoke settings (1 seed, 1 epoch) in both
    seeds = payload["overrides"]["smoke"]["train"]["seeds"]
    assert len(alone["train_members"]) == seeds and alone["hedge"] is None
    # the default arm's train may hedge with the recipe (train.hedge_initial_point): then seeds members each
    assert default["initial_point"]["trial_id"] == "0000"
    hedged = default["hedge"] is not None
    assert len(default["train_members"]) == seeds * (1 + hedged)
    if hedged:
        assert default["hedge"]["trial_id"] == "0000" != default["best_trial"]["trial_id"]
    assert {m["epochs_run"] for m in default["train_members"] + alone["train_members"]} == {1}
    # the per-image comparison is the arms' own models (training is not bitwise reproducible across processes
    # on CPU: threaded reductions; so even the same configuration is compared, not assumed equal)
    for split in ("test", "fresh"):
        margin = run["margin"][split]
        assert margin["mean"] == pytest.approx(default[split] - alone[split])
        assert margin["low"] <= margin["mean"] <= margin["high"] and margin["n"] == run["sizes"][split]
    assert run["verdict"] in {"below", "above", "no clear difference"}


# ------------------------------------------------------------------ the fair search suite (bench/search_suite.py)
sys.path.insert(0, str(REPO / "bench"))
import search_readings  # noqa: E402

SUITE_METHODS = {"default", "bohb", "hyperband", "bayesian", "random", "optuna_tpe_hyperband", "dehb",
                 "smac_hyperband"}


@pytest.fixture(scope="module")
def suite_smoke(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("suite") / "search_suite.json"
    env = ENV
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "search_suite.py"), "--smoke", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_suite_gives_every_searcher_the_same_budget_split_and_initial_points(suite_smoke: dict) -> None:
    payload = suite_smoke
    measured = set(payload["methods"])
    assert measured | set(payload["skipped"]) == SUITE_METHODS and not payload["errors"]
    # the test extra installs optuna, so the real Optuna path runs; DEHB and SMAC3 are optional extras
    assert ("optuna_tpe_hyperband" in measured) == (importlib.util.find_spec("optuna") is not None)
    recipe = payload["recipe"]
    assert recipe, "the smoke settings ship an initial point"
    runs = payload["runs"]
    for condition in ("none", "recipe"):
        mine = [r for r in runs if r["condition"] == condition]
        assert {r["method"] for r in mine} == measured  # every searcher in both conditions
    for key in {(r["task"], r["seed"]) for r in runs}:
        group = [r for r in runs if (r["task"], r["seed"]) == key]
        # one budget, one split for every searcher and both conditions
        assert len({(r["budget_epochs"], r["budget_seconds"]) for r in group}) == 1
        assert len({json.dumps(r["split"], sort_keys=True) for r in group}) == 1
        assert len({(r["max_epochs"], r["factor"], r["commit"]) for r in group}) == 1
        for run in group:
            assert len(run["epochs"]) >= run["budget_epochs"], f"{run['method']} stopped short of its budget"
            first = run["trials"][0]["values"]
            if run["condition"] == "none":
                assert run["initial_points"] == []
                assert any(first.get(k) != v for k, v in recipe[0].items()), f"{run['method']}: recipe leaked"
            else:  # the recipe is each searcher's first trial, whatever library runs it
                assert run["initial_points"] == recipe
                assert {k: first.get(k) for k in recipe[0]} == recipe[0], run["method"]
    assert set(payload["mean_rank"]) == {"none", "recipe"}
    assert set(payload["fixed_cost"]) == measured


def epoch(val: float, test: float, t_end: float) -> dict:
    return {"val": val, "test": test, "t_end": t_end}


def test_readings_of_a_hand_made_trace() -> None:
    trace = [epoch(0.5, 0.4, 1.0), epoch(0.7, 0.6, 2.0), epoch(0.7, 0.9, 3.0),  # a tie keeps the earlier epoch
             epoch(0.6, 0.5, 7.0), epoch(0.9, 0.8, 8.5), epoch(0.8, 0.7, 9.0)]
    got = search_readings.run_readings(trace, budget_epochs=6, budget_seconds=9.0)
    # epochs: 1/3 -> 2 epochs, 2/3 -> 4, full -> 6
    assert got["epochs"] == {"1/3": {"val": 0.7, "test": 0.6}, "2/3": {"val": 0.7, "test": 0.6},
                             "full": {"val": 0.9, "test": 0.8}}
    # seconds: 1/3 -> 3 s (three epochs ended), 2/3 -> 6 s (still three), full -> 9 s (all)
    assert got["seconds"] == {"1/3": {"val": 0.7, "test": 0.6}, "2/3": {"val": 0.7, "test": 0.6},
                              "full": {"val": 0.9, "test": 0.8}}
    late = search_readings.run_readings([epoch(0.5, 0.5, 5.0)], budget_epochs=3, budget_seconds=9.0)
    assert late["seconds"]["1/3"] is None and late["seconds"]["2/3"] == {"val": 0.5, "test": 0.5}
    assert search_readings.reading_value(None, "val") == 0.0


def test_big_fidelity_arms_differ_in_fidelity_only(tmp_path: Path) -> None:
    import big_fidelity
    import search_suite

    made = {arm: search_suite.run_params("default", "recipe", 0, "full", tmp_path, fidelity=arm)
            for arm in big_fidelity.FIDELITY_ARMS}
    assert {arm: p.tune.fidelity for arm, p in made.items()} == {"epochs": "epochs", "data": "data"}
    assert made["epochs"].model_copy(update={"tune": made["data"].tune}) == made["data"]
    assert made["data"].tune.initial_points  # the shipped recipe, as for every arm
    run = {"epochs": [epoch(0.5, 0.4, 1.0), epoch(0.8, 0.7, 2.5), epoch(0.9, 0.6, 3.5)]}
    assert big_fidelity.readings(run, 3.0) == {"1/3": {"val": 0.5, "test": 0.4}, "2/3": {"val": 0.5, "test": 0.4},
                                              "full": {"val": 0.8, "test": 0.7}}


def test_suite_seeds_can_start_past_zero(capsys: pytest.CaptureFixture) -> None:
    import search_suite

    assert search_suite.seed_list(0, 3) == [0, 1, 2] and search_suite.seed_list(1, 2) == [1, 2]
    with pytest.raises(SystemExit) as stop:
        search_suite.seed_list(0, 0)
    assert stop.value.code == 2 and "--seeds" in capsys.readouterr().err


def test_suite_results_of_separate_runs_merge_into_one_table(tmp_path: Path) -> None:
    import search_suite

    def result(seed: int, vals: dict[str, float], mode: str = "full") -> Path:
        runs = [{"task": "t1", "seed": seed, "method": m, "condition": c, "budget_epochs": 1, "budget_seconds": 1.0,
                 "epochs": [epoch(v, v, 0.5)], "trials": [], "split": {"fingerprint": "f1"}}
                for m, v in vals.items() for c in search_suite.CONDITIONS]
        payload = {"mode": mode, "budget_epochs": 1, "recipe": [], "methods": list(vals), "time_cap": 3.0,
                   "commit": f"c{seed}", "tasks": ["t1"], "environment": {"date": "d", "cpu_model": "cpu"},
                   "runs": runs}
        path = tmp_path / f"seed{seed}-{mode}.json"
        path.write_text(json.dumps(payload))
        return path

    a, b = result(0, {"x": 0.9, "y": 0.8}), result(1, {"x": 0.5, "y": 0.7})
    out = tmp_path / "merged.json"
    assert search_suite.main(["--merge", str(a), str(b), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["seeds"] == [0, 1] and [s["commit"] for s in merged["merged_from"]] == ["c0", "c1"]
    table = merged["per_task"]["none"]["t1"]
    assert table["x"]["epochs/full/val"]["mean"] == pytest.approx(0.7)  # (0.9 + 0.5) / 2
    assert table["y"]["epochs/full/val"]["mean"] == pytest.approx(0.75)  # y ahead on the two seeds' mean
    assert merged["mean_rank"]["none"]["y"]["epochs/full/val"] == 1.0
    assert "Merged by" in out.with_suffix(".md").read_text()
    # the same seed twice, or another mode: not one benchmark
    assert search_suite.main(["--merge", str(a), str(a), "--out", str(out)]) == 2
    assert search_suite.main(["--merge", str(a), str(result(1, {"x": 0.5, "y": 0.7}, "quick")), "--out",
                              str(out)]) == 2


def test_ranks_and_suite_mean_rank() -> None:
    assert search_readings.ranks({"a": 0.9, "b": 0.8, "c": 0.9}) == {"a": 1.5, "c": 1.5, "b": 3.0}

    def table(**means: float) -> dict:
        return {m: {key: {"n": 1, "mean": v} for key in ("epochs/full/val",)} for m, v in means.items()}

    tables = {"t1": table(a=0.9, b=0.8), "t2": table(a=0.5, b=0.7), "t3": table(a=0.6, b=0.6)}
    ranked = search_readings.mean_ranks(tables, ["a", "b"])
    assert ranked["a"]["epochs/full/val"] == pytest.approx((1 + 2 + 1.5) / 3)
    assert ranked["b"]["epochs/full/val"] == pytest.approx((2 + 1 + 1.5) / 3)
    runs = [{"method": "a", "seed": s, "readings": search_readings.run_readings([epoch(v, v, 1.0)], 1, 1.0)}
            for s, v in ((0, 0.5), (1, 0.7))]
    spread = search_readings.task_table(runs, ["a"])["a"]["epochs/full/val"]
    assert spread["n"] == 2 and spread["mean"] == pytest.approx(0.6) and (spread["min"], spread["max"]) == (0.5, 0.7)


def test_one_graph_steps_pairs_the_same_fits(smoke_results: dict[str, tuple[int, str, Path]]) -> None:
    payload = json.loads(smoke_results["one_graph_steps"][2].read_text())
    assert payload["same_val_accuracy"] is True  # the same ops either way: the same model
    assert len(payload["pairs"]) == payload["rounds"] * len(payload["configurations"])
    assert {pair["first"] for pair in payload["pairs"]} <= {"one_graph", "keras"}
    assert payload["summary"]["first_extra_cpu"]["pairs"] == len(payload["pairs"])
