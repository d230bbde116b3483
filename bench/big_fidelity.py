"""Data fidelity vs epoch fidelity vs the best peer, at matched wall time, on a big folder (issue 25.4).

On the pipeline's processed split of a big folder (``bench/big_folders.py``, then ``python -m
pipeline preprocess``), each arm searches for the same T seconds, in a fresh process, with the same
splits, seed, search space, ``max_epochs`` / ``factor`` and initial points (the shipped recipe, each
arm its own library's way, as ``bench/search_suite.py``'s condition ``recipe``):

  epochs   the pipeline's default tuner (params.yaml: BOHB), ``tune.fidelity: epochs``
  data     the same, ``tune.fidelity: data`` (low rungs on a nested share of the training rows)
  optuna_tpe_hyperband, dehb, smac_hyperband, hyperband, ...   a peer of ``bench/search_peers.py``
           (epochs only: their libraries have no data fidelity); by default Optuna TPE +
           HyperbandPruner, the peer the project's own extras install

Every epoch is recorded (``bench/search_efficiency.SearchLog``: the clock leaves out the per-epoch
test evaluation); each arm is read at 1/3, 2/3 and all of T: the best validation accuracy within
that time, and the test accuracy of that same epoch's model (validation decides, test reports).

    python bench/big_fidelity.py --processed /tmp/bg/data/processed --seconds 360 \\
        --out bench/results/big_fidelity_grey.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import search_peers as peers  # noqa: E402
import search_readings  # noqa: E402
import search_suite as suite  # noqa: E402

NAME = "big_fidelity"
FIDELITY_ARMS = ("epochs", "data")  # the pipeline's default tuner under each fidelity


def load_processed(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from pipeline.data.store import load_meta, load_split

    meta = load_meta(folder)
    splits = {name: load_split(folder, name, mmap=False) for name in ("train", "validation", "test")}
    return splits, {"num_classes": int(meta["num_classes"]), "fingerprint": meta.get("fingerprint")}


def run_arm(arm: str, seed: int, seconds: float, splits: dict, meta: dict, workdir: Path) -> dict[str, Any]:
    import keras

    method = "default" if arm in FIDELITY_ARMS else arm
    params = suite.run_params(method, "recipe", seed, "full", workdir,
                              fidelity=arm if arm in FIDELITY_ARMS else "epochs")
    points = list(params.tune.initial_points)
    # budget: any epoch, then T seconds (SearchLog stops the search at the first epoch end past T)
    log = peers.SuiteLog(*splits["test"], 1, seconds)
    keras.backend.clear_session()
    peers.run_searcher(method, params, splits, meta, log, workdir, points)
    return {"arm": arm, "method": method, "fidelity": params.tune.fidelity if method in peers.KT_METHODS else "epochs",
            "seed": seed, "pid": os.getpid(), "initial_points": points, "max_epochs": params.tune.max_epochs,
            "factor": params.tune.factor, "split_fingerprint": meta["fingerprint"], **log.result()}


def readings(run: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Best validation (and that epoch's test) accuracy within 1/3, 2/3 and all of T (the suite's readings)."""
    got = search_readings.run_readings(run["epochs"], budget_epochs=len(run["epochs"]), budget_seconds=seconds)
    return got["seconds"]


def run_child(args: argparse.Namespace) -> int:
    common.quiet_tensorflow()
    warnings.filterwarnings("ignore")
    splits, meta = load_processed(Path(args.processed))
    result = run_arm(args.child, args.seed, args.seconds, splits, meta, Path(args.workdir))
    Path(args.json_out).write_text(json.dumps(result, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--processed", required=True, type=Path, help="a pipeline preprocess output folder")
    parser.add_argument("--seconds", type=float, default=360.0, help="wall-time budget T of every arm")
    parser.add_argument("--arms", default="epochs,data,optuna_tpe_hyperband",
                        help=f"comma-separated: {', '.join(FIDELITY_ARMS)} and any of {', '.join(peers.METHODS[1:])}")
    parser.add_argument("--seed", type=int, default=0)
    common.add_child_args(parser)
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in (*FIDELITY_ARMS, *peers.METHODS[1:])]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}")
    env = common.environment()
    tmp = Path(tempfile.mkdtemp(prefix="bench-big-fidelity-"))
    runs = []
    for arm in arms:  # one fresh process per arm, one after the other (the cores are the budget)
        out, log = tmp / f"{arm}.json", tmp / f"{arm}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", arm, "--json-out", str(out),
               "--workdir", str(tmp / arm), "--processed", str(args.processed), "--seconds", str(args.seconds),
               "--seed", str(args.seed)]
        start = time.perf_counter()
        with log.open("w") as stream:
            code = subprocess.run(cmd, cwd=common.REPO, stdout=stream, stderr=subprocess.STDOUT).returncode
        run = json.loads(out.read_text()) if code == 0 and out.is_file() else \
            {"arm": arm, "error": f"exit {code}: {log.read_text()[-800:]}"}
        run["process_seconds"] = round(time.perf_counter() - start, 1)
        if "epochs" in run:
            run["readings"] = readings(run, args.seconds)
            run["trials_count"], run["epochs_count"] = len(run["trials"]), len(run["epochs"])
        runs.append(run)
        shown = {k: v for k, v in run.items() if k in ("arm", "readings", "trials_count", "epochs_count", "error")}
        print(json.dumps(shown), flush=True)
    summary = [{k: r.get(k) for k in ("arm", "fidelity", "readings", "trials_count", "epochs_count",
                                      "search_seconds", "process_seconds", "error")} for r in runs]
    common.write_result(NAME, args, env, {"processed": str(args.processed), "seconds": args.seconds,
                                          "seed": args.seed, "arms": arms, "summary": summary, "runs": runs})
    return 0 if not any(r.get("error") for r in runs) else 1


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    sys.exit(main())
