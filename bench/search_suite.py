"""A fair search benchmark on the task suite (issue 21.2): every searcher, the same budgets, splits and initial points.

For every task of ``bench/tasks.py`` and every seed, each searcher (``bench/search_peers.py``)
runs in two conditions:

  none     no initial points, for every searcher (the default's too)
  recipe   the shipped ``tune.initial_points`` of params.yaml, given to each searcher its own
           library's way (BOHB: ``initial_points``; KerasTuner's other tuners: their oracle's first
           draws; Optuna: ``enqueue_trial``; DEHB: its first jobs; SMAC: ``additional_configs``)

Budgets, per task and seed, the same for every searcher and both conditions: B epochs (by
mode) and T seconds, where T is the wall time the default searcher took to spend B epochs in
condition ``none`` (the first run of that task and seed). Every other run goes on until it has
spent both B epochs and T seconds (or ``TIME_CAP`` x T), so each is read at 1/3, 2/3 and all of
B and of T: the best validation accuracy within that budget, and the test accuracy of that
same epoch's model. Splits: the pipeline's own ``preprocess`` (split seed 42) of the task, the
same for every run. Every epoch is recorded (``SearchLog``); the clock leaves out the test
evaluation. Per task, the seed spread; on the suite, the mean rank (rank the searchers' seed
means within each task, average over tasks). Fixed cost per trial as in ``search_efficiency``.

    python bench/search_suite.py                       # full suite, 3 seeds, each run in a fresh process
    python bench/search_suite.py --quick               # quick task sizes, tiny budgets, 1 seed
    python bench/search_suite.py --first-seed 1 --seeds 2   # seeds 1 and 2 only, to add to a run of seed 0
    python bench/search_suite.py --merge seed0.json seed1.json --out both.json   # their tables together
    python bench/search_suite.py --quick --methods default,hyperband,optuna_tpe_hyperband --tasks shapes
    python bench/search_suite.py --smoke               # seconds: digits subset, tiny space, one process

``--quick`` and ``--smoke`` run each task's searches in one process (``--fresh`` forces one
process per run); the full run starts a fresh process per run. Results:
``bench/results/search_suite.json`` (``--quick``: ``search_suite_quick.json``) and a Markdown
table beside it; BENCHMARKS.md is not edited by this script.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import search_efficiency as se  # noqa: E402
import search_peers as peers  # noqa: E402
import search_readings as readings  # noqa: E402

NAME = "search_suite"
CONDITIONS = ("none", "recipe")
CALIBRATION = ("default", "none")  # the run that sets T for its task and seed
TIME_CAP = 3.0
SPLIT_SEED = 42
# mode -> budget epochs B, tune.max_epochs, tune.factor, seeds
MODES = {"full": {"epochs": 60, "max_epochs": 9, "factor": 3, "seeds": 3},
         "quick": {"epochs": 12, "max_epochs": 3, "factor": 3, "seeds": 1},
         "smoke": {"epochs": 2, "max_epochs": 2, "factor": 2, "seeds": 1}}
SMOKE_SAMPLES = 200
SMOKE_TASKS = ("digits",)


def mode_of(args: argparse.Namespace) -> str:
    return "smoke" if args.smoke else "quick" if args.quick else "full"


def suite_tasks() -> dict[str, Any]:
    import tasks

    return tasks.TASKS


# ----------------------------------------------------------------------------------- data and params
def task_splits(name: str, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The task's splits exactly as the pipeline's ``preprocess`` makes them from its image folder."""
    import numpy as np
    import tasks

    from pipeline.config import parse_params
    from pipeline.data.sources import RawDataset, load_digits
    from pipeline.stages.preprocess import preprocess

    params = parse_params({"seed": SPLIT_SEED})
    if name == tasks.DIGITS:
        raw = load_digits()
        count = SMOKE_SAMPLES if mode == "smoke" else tasks.TASKS[name].quick_images if mode == "quick" else None
        if count is not None:
            raw.x, raw.y = raw.x[:count], raw.y[:count]
    else:  # what data.source: images reads back from write_task's PNGs, in its order (class by class)
        x, y = tasks.make_arrays(name, quick=mode != "full")
        order = np.argsort(y, kind="stable")
        raw = RawDataset(x=x[order].astype(np.float32), y=y[order], class_names=list(tasks.class_names(name)),
                         pixel_max=255.0, dataset=name)
    return preprocess(params, raw)


def raw_params(mode: str) -> dict[str, Any]:
    if mode == "smoke":
        return {"search_space": dict(se.SMOKE_SPACE), "tune": dict(se.SMOKE_TUNE), "train": {"epochs": 1, "seeds": 1}}
    return se.params_yaml()


def recipe(mode: str) -> list[dict[str, Any]]:
    return list(raw_params(mode).get("tune", {}).get("initial_points") or [])


def run_params(method: str, condition: str, seed: int, mode: str, workdir: Path, **tune_overrides: Any) -> Any:
    """params.yaml as the pipeline validates it, changed only in the tuner, the budget and the initial points
    (and ``tune_overrides``, e.g. ``fidelity`` for ``bench/big_fidelity.py``)."""
    from pipeline.config import parse_params

    raw = raw_params(mode)
    sizes = MODES[mode]
    tune = {**raw.get("tune", {}), "directory": str(workdir / "tuner"), "resume": False, "trials_per_process": 0,
            "max_epochs": sizes["max_epochs"], "factor": sizes["factor"],
            "initial_points": recipe(mode) if condition == "recipe" else [],
            "hyperband_iterations": 100, "max_trials": peers.MANY}  # the budget stops a search
    if method in ("bohb", "hyperband", "bayesian", "random"):
        tune["tuner"] = method
    return parse_params({**raw, "seed": seed, "tune": {**tune, **tune_overrides}})


# ----------------------------------------------------------------------------------- child process
def run_one(job: dict[str, Any], splits: dict, meta: dict, workdir: Path) -> dict[str, Any]:
    import keras

    method, condition, seed, mode = job["method"], job["condition"], job["seed"], job["mode"]
    where = workdir / f"{job['task']}-{method}-{condition}-{seed}"
    params = run_params(method, condition, seed, mode, where)
    points = list(params.tune.initial_points)
    log = peers.SuiteLog(*splits["test"], job["budget_epochs"], job["budget_seconds"], smoke=mode == "smoke")
    keras.backend.clear_session()
    peers.run_searcher(method, params, splits, meta, log, where, points)
    result = log.result()
    return {**job, "tuner": params.tune.tuner if method in peers.KT_METHODS else method, "pid": os.getpid(),
            "commit": common.git_commit(), "initial_points": points, "max_epochs": params.tune.max_epochs,
            "factor": params.tune.factor,
            "split": {"fingerprint": meta["fingerprint"], "sizes": {k: int(len(v[1])) for k, v in splits.items()}},
            **result}


def run_child(args: argparse.Namespace) -> int:
    common.quiet_tensorflow()
    warnings.filterwarnings("ignore")
    jobs = json.loads(Path(args.child).read_text())
    workdir = Path(args.workdir)
    data: dict[str, Any] = {}
    results = []
    for job in jobs:
        if job["task"] not in data:
            data[job["task"]] = task_splits(job["task"], job["mode"])
        try:
            result = run_one(job, *data[job["task"]], workdir)
        except Exception as error:  # noqa: BLE001 - one searcher's failure is a row, not the end of the suite
            result = {**job, "error": f"{type(error).__name__}: {error}"[:500], "pid": os.getpid()}
        results.append(result)
        Path(args.json_out).write_text(json.dumps(results, default=str))  # what ran so far survives a crash
        best = max((e["val"] for e in result.get("epochs", [])), default=float("nan"))
        print(f"{job['task']} {job['method']} {job['condition']} seed {job['seed']}: "
              f"{len(result.get('epochs', []))} epochs, {len(result.get('trials', []))} trials, "
              f"{result.get('search_seconds') or 0:.1f} s, best val {best:.4f} {result.get('error', '')}", flush=True)
    return 0


# ---------------------------------------------------------------------------------- parent process
def run_jobs(jobs: list[dict[str, Any]], tmp: Path, tag: str) -> list[dict[str, Any]]:
    """Run ``jobs`` in one fresh process; a crash is an error row per job."""
    spec, out, log_path = tmp / f"{tag}.jobs.json", tmp / f"{tag}.json", tmp / f"{tag}.log"
    spec.write_text(json.dumps(jobs))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(spec), "--json-out", str(out),
           "--workdir", str(tmp / tag)]
    with log_path.open("w") as log:
        code = subprocess.run(cmd, cwd=common.REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    done = json.loads(out.read_text()) if out.is_file() else []
    print(log_path.read_text()[-2000:] if code else "".join(log_path.read_text().splitlines(True)[-len(jobs):]),
          end="", flush=True)
    tail = log_path.read_text()[-500:]
    return done + [{**j, "error": f"exit {code}: {tail}"} for j in jobs[len(done):]]


def plan(args: argparse.Namespace, methods: list[str], task_names: list[str], seeds: list[int],
         mode: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Per task and seed: the calibration job (sets T) and the other jobs."""
    out = []
    for task in task_names:
        for seed in seeds:
            base = {"task": task, "seed": seed, "mode": mode, "budget_epochs": MODES[mode]["epochs"]}
            first = {**base, "method": CALIBRATION[0], "condition": CALIBRATION[1], "budget_seconds": None}
            rest = [{**base, "method": m, "condition": c} for c in CONDITIONS for m in methods
                    if (m, c) != CALIBRATION]
            out.append((first, rest))
    return out


def run_suite(args: argparse.Namespace, methods: list[str], task_names: list[str], seeds: list[int],
              mode: str, progress: Any = None) -> list[dict[str, Any]]:
    """Every planned run; ``progress(runs)`` after each task and seed (the results so far are written)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    fresh = args.fresh or mode == "full"
    runs: list[dict[str, Any]] = []
    for first, rest in plan(args, methods, task_names, seeds, mode):
        key = f"{first['task']}-{first['seed']}"
        if mode == "smoke":  # one process: T from the calibration run, read inside the child
            runs += run_smoke_group(first, rest, tmp, key)
            continue
        [calibration] = run_jobs([first], tmp, f"{key}-calibration")
        calibration["budget_seconds"] = calibration.get("search_seconds")
        runs.append(calibration)
        if calibration.get("error") or not calibration.get("search_seconds"):
            runs += [{**j, "budget_seconds": None, "error": "no budget: the calibration run failed"} for j in rest]
            continue
        rest = [{**j, "budget_seconds": calibration["search_seconds"]} for j in rest]
        if fresh:
            for job in rest:
                runs += run_jobs([job], tmp, f"{key}-{job['method']}-{job['condition']}")
        else:
            runs += run_jobs(rest, tmp, f"{key}-rest")
        if progress is not None:
            progress(runs)
    return runs


def run_smoke_group(first: dict[str, Any], rest: list[dict[str, Any]], tmp: Path, key: str) -> list[dict[str, Any]]:
    # smoke runs stop at the epoch budget alone (SearchLog), so T is recorded but does not steer them
    runs = run_jobs([{**first, "budget_seconds": None}, *[{**j, "budget_seconds": 1.0} for j in rest]], tmp, key)
    seconds = runs[0].get("search_seconds") or 1.0
    for run in runs:
        run["budget_seconds"] = seconds
        if "budget" in run:
            run["budget"] = {"epochs": run["budget_epochs"], "seconds": seconds}
    return runs


def summarize(runs: list[dict[str, Any]], methods: list[str], task_names: list[str]) -> dict[str, Any]:
    for run in runs:
        if run.get("epochs") is not None and run.get("budget_seconds"):
            run["readings"] = readings.run_readings(run["epochs"], run["budget_epochs"], run["budget_seconds"])
    per_task: dict[str, Any] = {c: {} for c in CONDITIONS}
    for condition in CONDITIONS:
        for task in task_names:
            mine = [r for r in runs if r["task"] == task and r["condition"] == condition]
            per_task[condition][task] = readings.task_table(mine, methods)
    ranked = {c: readings.mean_ranks(per_task[c], methods) for c in CONDITIONS}
    fixed: dict[str, Any] = {}
    for method in methods:
        by_task = {t: se.fixed_cost([r for r in runs if r["method"] == method and r["task"] == t and r.get("trials")])
                   for t in task_names}
        by_task = {t: v for t, v in by_task.items() if v}
        values = [v["fixed_seconds_per_trial"] for v in by_task.values()]
        shares = [v["fixed_share_of_wall_time"] for v in by_task.values() if v["fixed_share_of_wall_time"] is not None]
        fixed[method] = {"per_task": by_task, "mean_fixed_seconds_per_trial": statistics.fmean(values) if values
                         else None, "mean_fixed_share": statistics.fmean(shares) if shares else None}
    return {"per_task": per_task, "mean_rank": ranked, "fixed_cost": fixed}


def fmt(s: dict[str, Any]) -> str:
    return "-" if not s.get("n") else f"{s['mean']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def markdown(payload: dict[str, Any]) -> str:
    methods, labels = payload["methods"], readings.LABELS
    lines = [f"Tasks: {', '.join(payload['tasks'])}; seeds {payload['seeds']}; budget B = {payload['budget_epochs']} "
             f"epochs and T = the default's seconds for B epochs without initial points (per task and seed); "
             f"mode {payload['mode']}. Recipe = {json.dumps(payload['recipe'])}.", ""]
    for condition in CONDITIONS:
        lines += [f"**Suite mean rank, condition `{condition}`** (1 = best; per task the seed means are ranked)", ""]
        header = ["method"] + [f"{m} {a[:3]} {lab}" for m in ("val", "test") for a in readings.AXES for lab in labels]
        rows = []
        for method in methods:
            r = payload["mean_rank"][condition][method]
            rows.append([method] + [f"{r[f'{a}/{lab}/{m}']:.2f}" for m in ("val", "test") for a in readings.AXES
                                    for lab in labels])
        lines += [common.markdown_table(header, rows), ""]
    for condition in CONDITIONS:
        for task in payload["tasks"]:
            table = payload["per_task"][condition][task]
            lines += [f"*{task}, `{condition}`*: best val (its test) by epochs and by wall time, mean (min-max)", ""]
            header = ["method", "seeds"] + [f"val {a[:3]} {lab}" for a in readings.AXES for lab in labels] + \
                ["test ep full", "test sec full"]
            rows = [[m, len(table[m]["seeds"])] + [fmt(table[m][f"{a}/{lab}/val"]) for a in readings.AXES
                                                   for lab in labels]
                    + [fmt(table[m]["epochs/full/test"]), fmt(table[m]["seconds/full/test"])] for m in methods]
            lines += [common.markdown_table(header, rows), ""]
    rows = [[m, f"{v['mean_fixed_seconds_per_trial']:.2f}" if v["mean_fixed_seconds_per_trial"] is not None else "-",
             f"{v['mean_fixed_share']:.0%}" if v["mean_fixed_share"] is not None else "-"]
            for m, v in payload["fixed_cost"].items()]
    lines += ["**Fixed cost per trial** (wall time beyond its epochs; per task, then the mean over tasks)", "",
              common.markdown_table(["method", "fixed s/trial", "fixed share of wall time"], rows)]
    return "\n".join(lines)


def merged_runs(paths: list[Path]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The runs of several results of this script (e.g. seed 0 one day, seed 1 the next), checked to be one benchmark.

    They must share the mode, B, the recipe, the methods and each task's split (fingerprint), and no
    (task, seed) may come twice: T is set per task and seed by that run's own calibration, so
    seeds from different runs keep their own, fair budgets. Anything else is a ValueError.
    """
    runs: list[dict[str, Any]] = []
    sources, first = [], None
    for path in paths:
        payload = json.loads(Path(path).read_text())
        same = {k: payload.get(k) for k in ("mode", "budget_epochs", "recipe", "methods", "time_cap")}
        if first is None:
            first = same
        elif same != first:
            differ = [k for k in same if same[k] != first[k]]
            raise ValueError(f"{path} differs from {paths[0]} in {', '.join(differ)}")
        pairs = {(r["task"], r["seed"]) for r in payload["runs"]}
        clash = pairs & {(r["task"], r["seed"]) for r in runs}
        if clash:
            raise ValueError(f"{path} repeats task and seed {sorted(clash)[0]}")
        runs += payload["runs"]
        sources.append({"file": str(path), "commit": payload.get("commit"), "date": payload["environment"]["date"],
                        "cpu_model": payload["environment"]["cpu_model"], "tasks": payload["tasks"],
                        "seeds": sorted({r["seed"] for r in payload["runs"]})})
    for task in {r["task"] for r in runs}:
        splits = {r["split"]["fingerprint"] for r in runs if r["task"] == task and r.get("split")}
        if len(splits) > 1:
            raise ValueError(f"task {task} has {len(splits)} different splits")
    return runs, {**(first or {}), "sources": sources}


def seed_list(first: int, count: int) -> list[int]:
    """Seeds ``first .. first + count - 1``; a bad count or a negative seed is a usage error."""
    if count < 1 or first < 0:
        print(f"--seeds must be >= 1 and --first-seed >= 0 (got {count}, {first})", file=sys.stderr)
        raise SystemExit(2)
    return list(range(first, first + count))


def parse_list(text: str | None, known: list[str], what: str) -> list[str]:
    if text is None:
        return list(known)
    chosen = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in chosen if t not in known]
    if unknown or not chosen:
        print(f"--{what}: unknown {', '.join(unknown) or '(none given)'}; allowed: {', '.join(known)}", file=sys.stderr)
        raise SystemExit(2)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--quick", action="store_true", help="quick task sizes, tiny budgets, 1 seed (minutes)")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(peers.METHODS)}")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of bench/tasks.py's tasks")
    parser.add_argument("--seeds", type=int, default=None, help="how many seeds (default by mode)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST..FIRST+N-1 (default 0): add seeds to an earlier run's")
    parser.add_argument("--epochs", type=int, default=None, help="budget B in epochs (default by mode)")
    parser.add_argument("--fresh", action="store_true", help="one process per run in --quick too")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                        help="no runs: the tables of earlier results of this script together (other seeds), "
                             "to --out (the runs stay in those files)")
    common.add_child_args(parser)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    if args.merge:
        return merge(args)
    mode = mode_of(args)
    if args.epochs is not None:
        MODES[mode]["epochs"] = args.epochs
    methods = parse_list(args.methods, list(peers.METHODS), "methods")
    if CALIBRATION[0] not in methods:
        methods.insert(0, CALIBRATION[0])  # it sets the wall-time budget of its task and seed
    known_tasks = list(SMOKE_TASKS) if mode == "smoke" else list(suite_tasks())
    task_names = parse_list(args.tasks, known_tasks, "tasks")
    seeds = seed_list(args.first_seed, args.seeds if args.seeds is not None else MODES[mode]["seeds"])
    skipped = {m: f"{peers.MODULES[m]} is not installed (pip install -e '.[bench]')" for m in methods
               if m in peers.MODULES and importlib.util.find_spec(peers.MODULES[m]) is None}
    measured = [m for m in methods if m not in skipped]
    env = common.environment()
    start = time.perf_counter()
    if args.out is None and mode == "quick":
        args.out = common.RESULTS_DIR / f"{NAME}_quick.json"

    def write(runs: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        finished = sorted({r["task"] for r in runs})
        summary = summarize(runs, measured, [t for t in task_names if t in finished])
        result = {"mode": mode, "complete": done, "methods": measured, "skipped": skipped, "tasks": finished,
                  "planned_tasks": task_names, "seeds": seeds, "conditions": list(CONDITIONS),
                  "budget_epochs": MODES[mode]["epochs"], "time_cap": TIME_CAP, "split_seed": SPLIT_SEED,
                  "recipe": recipe(mode), "commit": env.get("git_commit"), "wall_seconds": time.perf_counter() - start,
                  "errors": [{k: r[k] for k in ("task", "method", "condition", "seed", "error")} for r in runs
                             if r.get("error")],
                  **summary, "runs": runs}
        path = common.write_result(NAME, args, env, result)
        payload = json.loads(path.read_text())
        path.with_suffix(".md").write_text(markdown(payload) + "\n\n" + common.environment_line(payload) + "\n")
        return result

    runs = run_suite(args, measured, task_names, seeds, mode, progress=lambda so_far: write(so_far, False))
    result = write(runs, True)
    print(common.output_path(NAME, args).with_suffix(".md").read_text())
    return 0 if not result["errors"] else 1


def merge(args: argparse.Namespace) -> int:
    try:
        runs, meta = merged_runs(args.merge)
    except (OSError, KeyError, ValueError) as error:  # unreadable, not this script's, or not one benchmark
        print(f"--merge: {error}", file=sys.stderr)
        return 2
    tasks = sorted({r["task"] for r in runs})
    result = {"merged_from": meta["sources"], "mode": meta["mode"], "methods": meta["methods"], "tasks": tasks,
              "seeds": sorted({r["seed"] for r in runs}), "conditions": list(CONDITIONS),
              "budget_epochs": meta["budget_epochs"], "time_cap": meta["time_cap"], "recipe": meta["recipe"],
              **summarize(runs, meta["methods"], tasks)}  # the runs stay in the merged files
    args.out = args.out or common.RESULTS_DIR / f"{NAME}_merged.json"
    path = common.write_result(NAME, args, common.environment(), result)
    payload = json.loads(path.read_text())
    sources = "; ".join(f"{s['file']} ({s['commit']}, {s['date']}, seeds {s['seeds']})" for s in meta["sources"])
    text = markdown(payload) + f"\n\nMerged by `{payload['command']}` from {sources}.\n"
    path.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    sys.exit(main())

