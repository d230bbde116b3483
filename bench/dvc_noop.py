"""Time of ``dvc repro`` when nothing changed.

In a temp git + DVC copy of the project (code, params.yaml, dvc.yaml) with tiny parameters,
one real ``dvc repro`` runs first (the whole pipeline; if a stage fails, the script falls
back to the preprocess stage alone and says so in the JSON and the table). Then the same
``dvc repro`` is timed several times: every stage is up to date, so this is DVC's own cost
of hashing dependencies, reading dvc.lock and checking outputs.

    python bench/dvc_noop.py                       # whole pipeline, 5 timed no-op runs
    python bench/dvc_noop.py --stage preprocess    # only the preprocess stage
    python bench/dvc_noop.py --smoke               # seconds: preprocess only, 1 timed run
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "dvc_noop"
TINY = {
    "data": {"max_samples": 200},
    "search_space": {"architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap",
                     "dense_units": 0, "batch_norm": False, "regularizer": "none", "dropout": 0.0,
                     "optimizer": {"choices": ["adam", "rmsprop"]}, "lr_schedule": "constant", "batch_size": 64,
                     "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"}},
    "tune": {"tuner": "random", "max_trials": 2, "max_epochs": 1},
    "train": {"epochs": 1},
    "mlflow": {"experiment": "bench-dvc-noop"},
}


def make_project(root: Path) -> Path:
    import yaml

    root.mkdir(parents=True)
    shutil.copytree(common.REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"):
        if (common.REPO / name).exists():
            shutil.copy2(common.REPO / name, root / name)
    (root / "data" / "raw").mkdir(parents=True)  # preprocess's images-folder dep, as in a clone
    (root / "data" / "raw" / ".gitkeep").touch()
    raw = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in TINY.items():
        if isinstance(raw.get(section), dict) and section != "search_space":
            raw[section].update(values)
        elif section == "search_space":
            raw[section].update(values)
        else:
            raw[section] = values
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.com"],
                ["git", "config", "user.name", "bench"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "bench project"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True, env=project_env(root))
    return root


def project_env(root: Path) -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(root),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


def repro(root: Path, stage: str | None, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess[str]]:
    cmd = ["dvc", "repro", *([stage] if stage else [])]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=project_env(root), timeout=timeout)
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--stage", default=None, help="reproduce only this stage (and what it needs)")
    parser.add_argument("--repeats", type=int, default=None, help="timed no-op runs (default 5; smoke 1)")
    args = parser.parse_args()
    env = common.environment()
    repeats = args.repeats or (1 if args.smoke else 5)
    stage = args.stage or ("preprocess" if args.smoke else None)
    fallback_reason = None
    with tempfile.TemporaryDirectory(prefix="bench-dvc-") as tmp:
        root = make_project(Path(tmp) / "project")
        first_seconds, done = repro(root, stage)
        if done.returncode != 0 and stage is None:
            fallback_reason = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["failed"]
            fallback_reason = f"whole-pipeline repro failed: {fallback_reason[0][:300]}"
            print(f"dvc_noop: {fallback_reason}; falling back to the preprocess stage", file=sys.stderr)
            stage = "preprocess"
            first_seconds, done = repro(root, stage)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"dvc_noop: the first `dvc repro {stage or ''}` failed")
        stages_run = [line.split("'")[1] for line in done.stdout.splitlines()
                      if line.startswith("Running stage '")]
        seconds: list[float] = []
        reran: list[str] = []
        for _ in range(repeats):
            took, again = repro(root, stage, timeout=300)
            if again.returncode != 0:
                raise SystemExit(f"dvc_noop: no-op repro failed: {again.stderr[-2000:]}")
            reran += [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
            seconds.append(took)
            print(f"no-op dvc repro {stage or ''}: {took:.2f} s", flush=True)
    median = statistics.median(seconds)
    scope = "whole pipeline" if stage is None else f"stage {stage}"
    result: dict[str, Any] = {
        "scope": scope, "stage": stage, "fallback_reason": fallback_reason, "stages_in_first_repro": stages_run,
        "first_repro_seconds": first_seconds, "repeats": repeats, "seconds": seconds, "median_seconds": median,
        "min_seconds": min(seconds), "stages_rerun_in_noop": reran, "tiny_params": TINY,
    }
    body = (f"### DVC no-op: `dvc repro` with nothing changed takes **{median:.2f} s** (median of {repeats}; "
            f"min {min(seconds):.2f} s) over the {scope}\n\n"
            + common.markdown_table(["scope", "stages", "first (real) repro", "no-op median", "no-op min",
                                     "stages re-run by the no-op"],
                                    [[scope, ", ".join(stages_run) or "n/a", f"{first_seconds:.0f} s",
                                      f"{median:.2f} s", f"{min(seconds):.2f} s", len(reran)]])
            + "\n\nIn a temp git + DVC copy of the project with tiny params (200 digits images, 2 random-search "
              "trials of 1 epoch, 1 training epoch)."
            + (f" Fallback: {fallback_reason}." if fallback_reason else ""))
    common.write_result(NAME, args, env, result, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
