"""The final model against the recipe retrained alone, per task of the suite (issue 21.3, second half).

Per task and seed, two arms run the pipeline's own stages (``python -m pipeline validate, preprocess,
tune, train, evaluate``, each a fresh process) in a project folder of their own, with params.yaml's
settings but for the task's ``data:`` keys, the seed and, in one arm, the search:

    default  the shipped search (BOHB, the recipe in ``tune.initial_points`` as its first trial and prior)
    recipe   the recipe alone: ``tune.tuner: random``, ``tune.max_trials: 1``, so the one trial is the
             initial point (the recipe) trained as a search trial; then the same ``train`` and ``evaluate``

Same split (both arms' ``meta.json`` fingerprints are checked equal), same seed, the same ``train``
protocol (``train.*`` of params.yaml: seeds, epochs, checkpoint fallback) and ``evaluate``. Each stage
chooses on validation as the pipeline does; this script only reports: the final model's validation score
(``results/train/run.json``), its test accuracy (``results/evaluate/metrics.json``, checked against the
per-image scores below) and, for the generated tasks, its accuracy on ``FRESH`` new draws of the task's
generator (images in no version of the task, fed as raw pixels as a user sends them). The difference
default - recipe per image, with a paired bootstrap 95% interval, on the fresh images where there are
some, else on the test split, gives the verdict: ``below`` (interval under 0: the issue's failure),
``above`` or ``no clear difference``. Training is not bitwise reproducible across processes on the CPU
(TensorFlow's threaded reductions), so where both arms retrain the same configuration their models still
differ a little: the interval, not equality, says whether the search cost anything.

    python bench/final_vs_recipe.py                          # 7 tasks, seed 0, training split capped (--images)
    python bench/final_vs_recipe.py --tasks digits,counting --seeds 0,1 --out /tmp/fvr.json
    python bench/final_vs_recipe.py --smoke                  # one tiny task, 1-2 epochs: a minute
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import tasks as suite  # noqa: E402
from task_reference import paired_bootstrap  # noqa: E402

NAME = "final_vs_recipe"
ARMS = ("default", "recipe")
STAGES = ("validate", "preprocess", "tune", "train", "evaluate")
IMAGES = 1200  # images per task (data.max_samples, stratified): the 7 tasks x 2 arms within about an hour here
FRESH, FRESH_SMOKE = 1500, 100
RECIPE_ONLY = {"tuner": "random", "max_trials": 1}  # the initial point is the random tuner's first and only trial
SMOKE_TUNE = {"max_epochs": 2, "factor": 2}
SMOKE_TRAIN = {"epochs": 1, "seeds": 1}


def project_params(task: str, folder: Path | None, seed: int, arm: str, images: int | None,
                   smoke: bool) -> dict[str, Any]:
    """params.yaml as shipped, changed only where the docstring says."""
    params = yaml.safe_load((common.REPO / "params.yaml").read_text())
    params["seed"] = seed
    params["data"].update(suite.data_params(task, folder))
    if images is not None and suite.TASKS[task].images > images:
        params["data"]["max_samples"] = images
    if smoke:
        params["tune"].update(SMOKE_TUNE)
        params["train"].update(SMOKE_TRAIN)
    if arm == "recipe":
        params["tune"].update(RECIPE_ONLY)
    return params


def run_arm(workdir: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Every stage in ``workdir`` (its own params.yaml, MLflow store and outputs); their seconds and outputs."""
    workdir.mkdir(parents=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(common.REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's own store, not one the caller points at
    seconds = {}
    with (workdir / "stages.log").open("w") as log:
        for stage in STAGES:
            start = time.perf_counter()
            code = subprocess.run([sys.executable, "-m", "pipeline", stage], cwd=workdir, env=env, stdout=log,
                                  stderr=subprocess.STDOUT).returncode
            seconds[stage] = round(time.perf_counter() - start, 1)
            if code != 0:
                raise RuntimeError(f"{workdir}: `python -m pipeline {stage}` exited {code}; see {workdir}/stages.log")

    def read(path: str) -> dict[str, Any]:
        return json.loads((workdir / path).read_text())

    trials = read("results/tune/best_hparams.json")
    return {"seconds": seconds, "meta": read("data/processed/meta.json"), "tune": read("results/tune/metrics.json"),
            "best": {k: trials.get(k) for k in ("trial_id", "score", "values", "epochs")},
            "initial_point": {k: (trials.get("initial_point") or {}).get(k) for k in ("trial_id", "score")},
            "train": read("results/train/run.json"), "evaluate": read("results/evaluate/metrics.json")}


def per_image(workdir: Path, fresh: tuple[np.ndarray, np.ndarray] | None) -> dict[str, np.ndarray]:
    """Per image, 1 where the arm's final model (models/model.keras) is right: test split and fresh draws."""
    from pipeline.data.store import load_meta, load_split
    from pipeline.evaluation.inputs import inputs_for
    from pipeline.evaluation.model_io import load_model_file
    from pipeline.model.export import input_kind

    meta = load_meta(workdir / "data/processed")
    model = load_model_file(workdir / "models/model.keras")
    x_test, y_test = load_split(workdir / "data/processed", "test")
    out = {"test": correct(model, inputs_for(input_kind(model), x_test, meta["normalization"]), y_test)}
    if fresh is not None:  # raw pixels, as a user sends them to the self-contained model
        out["fresh"] = correct(model, fresh[0].astype(np.float32), fresh[1])
    return out


def correct(model: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from pipeline.evaluation.metrics import predict_proba  # evaluate's own scoring

    return (np.argmax(predict_proba(model, x), axis=1) == np.asarray(y)).astype(np.int8)


def verdict(margin: dict[str, float]) -> str:
    if margin["high"] < 0:
        return "below"
    return "above" if margin["low"] > 0 else "no clear difference"


def run_task(task: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = None if task == suite.DIGITS else suite.write_task(task, root / "folders", quick=args.smoke)
    fresh = suite.fresh_arrays(task, FRESH_SMOKE if args.smoke else FRESH)
    arms, scores = {}, {}
    for arm in ARMS:
        workdir = root / f"{task}-seed{seed}-{arm}"
        arms[arm] = run_arm(workdir, project_params(task, folder, seed, arm, args.images, args.smoke))
        scores[arm] = per_image(workdir, fresh)
        checked = float(scores[arm]["test"].mean())
        if abs(checked - arms[arm]["evaluate"]["accuracy"]) > 1e-9:  # the model scored here is evaluate's
            raise RuntimeError(f"{task} {arm}: test accuracy {checked} here, {arms[arm]['evaluate']['accuracy']} "
                               "in results/evaluate/metrics.json")
        if not args.keep:
            shutil.rmtree(workdir / ".tuner", ignore_errors=True)
        on_fresh = "" if fresh is None else f", fresh {scores[arm]['fresh'].mean():.4f}"
        print(f"  {task} seed {seed} {arm:8s}: final validation {arms[arm]['train']['validation_score']:.4f}, "
              f"test {checked:.4f}{on_fresh} ({sum(arms[arm]['seconds'].values()):.0f} s)", flush=True)
    fingerprints = {arm: arms[arm]["meta"]["fingerprint"] for arm in ARMS}
    if len(set(fingerprints.values())) != 1:
        raise RuntimeError(f"{task} seed {seed}: the arms saw different splits {fingerprints}")
    margins = {split: paired_bootstrap(scores["default"][split], scores["recipe"][split])
               for split in scores["default"]}
    judged = "fresh" if "fresh" in margins else "test"
    return {"task": task, "seed": seed, "fingerprint": fingerprints["default"],
            "sizes": {**arms["default"]["meta"]["sizes"],
                      **({"fresh": len(fresh[1])} if fresh is not None else {})},
            "arms": {arm: summary(arms[arm], scores[arm]) for arm in ARMS},
            "margin": margins, "judged_on": judged, "verdict": verdict(margins[judged])}


def summary(arm: dict[str, Any], scores: dict[str, np.ndarray]) -> dict[str, Any]:
    train = arm["train"]
    return {"validation": train["validation_score"], "test": float(scores["test"].mean()),
            **({"fresh": float(scores["fresh"].mean())} if "fresh" in scores else {}),
            "best_trial": arm["best"], "trials": arm["tune"].get("trials"),
            "search_gain": arm["tune"].get("search_gain"), "initial_point_won": arm["tune"].get("initial_point_won"),
            "train_members": train.get("members"), "seconds": arm["seconds"],
            "initial_point": arm["initial_point"], "hedge": hedge_of(train),
            "baselines": arm["evaluate"].get("baselines")}


def hedge_of(train: dict[str, Any]) -> dict[str, Any] | None:
    """train.hedge_initial_point at work: the initial point averaged in, and each configuration's mean
    retrained validation score (what validation says of the hedge; None: no hedge)."""
    members = train.get("members") or []
    hedged = [m for m in members if m.get("hedge")]
    if not hedged:
        return None
    best = [m for m in members if not m.get("hedge")]
    decision = train.get("hedge") or {}  # train's resolve_hedge: whether the searched configuration stayed in
    return {"trial_id": hedged[0]["trial_id"],
            "initial_validation": float(np.mean([m["retrained_score"] for m in hedged])),
            "searched_validation": float(np.mean([m["retrained_score"] for m in best])),
            "kept": decision.get("kept", "both"), "both_validation": decision.get("both_score"),
            "initial_point_alone_validation": decision.get("initial_point_score")}


def markdown(runs: list[dict[str, Any]]) -> str:
    header = ["task", "seed", "train/val/test/fresh", "default: best trial, final val / test / fresh",
              "recipe alone: final val / test / fresh", "default - recipe, test (95% CI)",
              "default - recipe, fresh (95% CI)", "verdict", "seconds default / recipe"]

    def scores(arm: dict[str, Any]) -> str:
        fresh = f"{arm['fresh']:.3f}" if "fresh" in arm else "-"
        return f"{arm['validation']:.3f} / {arm['test']:.3f} / {fresh}"

    def ci(margin: dict[str, float] | None) -> str:
        return "-" if margin is None else f"{margin['mean']:+.3f} ({margin['low']:+.3f}..{margin['high']:+.3f})"

    rows = []
    for r in runs:
        d, b = r["arms"]["default"], r["arms"]["recipe"]
        sizes = "/".join(str(r["sizes"].get(k, "-")) for k in ("train", "validation", "test", "fresh"))
        hedge = d.get("hedge")
        trial = d["best_trial"]["trial_id"] + (f" + {hedge['trial_id']} (hedge)" if hedge else "")
        if hedge and hedge.get("kept") == "initial point":
            trial = f"{hedge['trial_id']} (hedge, {d['best_trial']['trial_id']} not kept)"
        rows.append([r["task"], r["seed"], sizes, f"{trial}: {scores(d)}", scores(b),
                     ci(r["margin"]["test"]), ci(r["margin"].get("fresh")), r["verdict"],
                     f"{sum(d['seconds'].values()):.0f} / {sum(b['seconds'].values()):.0f}"])
    below = [f"{r['task']} (seed {r['seed']})" for r in runs if r["verdict"] == "below"]
    return (common.markdown_table(header, rows) + "\n\n"
            + (f"Final model below the recipe retrained alone: {', '.join(below)}." if below
               else "In no task is the final model below the recipe retrained alone."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--tasks", default=None, help=f"comma-separated subset of: {', '.join(suite.TASKS)}")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (params.yaml's seed), default 0")
    parser.add_argument("--images", type=int, default=IMAGES,
                        help=f"images per task at most (data.max_samples, stratified; default {IMAGES}); 0: all")
    parser.add_argument("--keep", action="store_true", help="keep the tuner folders (default: removed after each arm)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the projects go (default: a temp folder)")
    args = parser.parse_args(argv)
    args.images = args.images or None
    names = [t.strip() for t in args.tasks.split(",")] if args.tasks else (
        ["tiny_noisy"] if args.smoke else list(suite.TASKS))
    unknown = [t for t in names if t not in suite.TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(suite.TASKS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    env = common.environment()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="final-vs-recipe-"))
    runs: list[dict[str, Any]] = []
    start = time.perf_counter()

    def result(complete: bool) -> dict[str, Any]:
        return {"commit": common.git_commit(), "tasks": names, "seeds": seeds, "images": args.images,
                "arms": {"default": "params.yaml's tune", "recipe": RECIPE_ONLY},
                "overrides": {"smoke": {"tune": SMOKE_TUNE, "train": SMOKE_TRAIN}} if args.smoke else {},
                "minutes": round((time.perf_counter() - start) / 60, 1), "runs": runs,
                "below": [r["task"] for r in runs if r["verdict"] == "below"], "complete": complete}

    for task in names:
        for seed in seeds:
            runs.append(run_task(task, seed, root, args))
            if len(runs) < len(names) * len(seeds):
                # what is done so far, kept if the run is stopped (a task takes minutes); BENCHMARKS.md's
                # table is written from the complete result only
                common.write_result(NAME, args, env, result(complete=False))
    common.write_result(NAME, args, env, result(complete=True), section=markdown(runs))
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
