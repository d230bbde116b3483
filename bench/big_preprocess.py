"""Wall time and peak memory of ``python -m pipeline preprocess`` on a big image folder (goal: peak <= 2x output).

Runs the stage as a new user would (``data.source: images`` on a folder from
``bench/big_folders.py``, every other section at its default) in a temp copy of ``pipeline/``,
and reads three figures: the wall time, the stage process's own peak RSS (``ru_maxrss`` from
``wait4``, what ``/usr/bin/time -v`` reports as "Maximum resident set size") and the peak of
the RSS summed over the stage and its decoding workers (sampled every 0.1 s with psutil, so
the workers' memory is counted too). The output is the bytes of the ``.npy`` files written.

    python bench/big_preprocess.py --folder /tmp/big/big_grey   # an existing folder (60,000 images: ~2-3 min)
    python bench/big_preprocess.py --task big_grey              # generates it under /tmp first
    python bench/big_preprocess.py --smoke                      # seconds: 600 images
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import big_folders  # noqa: E402
import common  # noqa: E402

NAME = "big_preprocess"
TARGET_RATIO = 2.0
MB = 2**20


def make_project(dest: Path, task: str, folder: Path) -> Path:
    """A folder holding this checkout's ``pipeline/`` and a params.yaml with only the data section."""
    import yaml

    dest.mkdir(parents=True)
    shutil.copytree(common.REPO / "pipeline", dest / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    params = {"seed": 42, "data": big_folders.data_params(task, folder)}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def _tree_rss(pid: int, peak: list[float], stop: threading.Event) -> None:
    """Keep ``peak[0]`` at the largest RSS summed over ``pid`` and its descendants seen so far."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        stop.wait(0.1)


def run_stage(project: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(project), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "preprocess"], cwd=project, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        peak, stop = [0.0], threading.Event()
        sampler = threading.Thread(target=_tree_rss, args=(proc.pid, peak, stop), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own maximum RSS, not its children's
        wall = time.perf_counter() - start
        stop.set()
        sampler.join()
        log.seek(0)
        output = log.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{NAME}: preprocess failed ({code}):\n{output[-3000:]}")
    written = sum(p.stat().st_size for p in (project / "data" / "processed").glob("*.npy"))
    rss = usage.ru_maxrss * 1024  # KiB on Linux
    return {"wall_seconds": round(wall, 1), "peak_rss_mb": round(rss / MB, 1),
            "peak_tree_rss_mb": round(peak[0] / MB, 1), "output_mb": round(written / MB, 1),
            "ratio": round(rss / written, 2), "tree_ratio": round(peak[0] / written, 2),
            "summary": output.strip().splitlines()}


def section(result: dict[str, Any]) -> str:
    m = result["measured"]
    return (f"### preprocess on {result['images']:,} images ({result['task']}): {m['wall_seconds']:.0f} s, peak RSS "
            f"{m['peak_rss_mb']:.0f} MB for {m['output_mb']:.0f} MB written ({m['ratio']:.2f}x; with the "
            f"{result['decode_workers']} decoding workers {m['peak_tree_rss_mb']:.0f} MB, {m['tree_ratio']:.2f}x; "
            f"target <= {TARGET_RATIO:.0f}x: {'met' if result['met'] else 'NOT met'}). Measured under load from "
            "other jobs on the machine (see the load averages).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(parser)
    parser.add_argument("--task", default="big_grey", choices=sorted(big_folders.BIG_TASKS))
    parser.add_argument("--folder", type=Path, default=None, help="an existing folder of the task (else generated)")
    args = parser.parse_args()
    if args.folder is not None and not args.folder.is_dir():
        print(f"--folder: {args.folder} is not a folder; allowed: one written by bench/big_folders.py",
              file=sys.stderr)
        return 2
    env = common.environment()
    with tempfile.TemporaryDirectory(prefix=f"bench-{NAME}-") as tmp:
        folder = args.folder
        if folder is None:  # in a child process: this one stays small (the stage's peak includes its fork)
            count = 600 if args.smoke else big_folders.BIG_TASKS[args.task].images
            subprocess.run([sys.executable, big_folders.__file__, "--out", str(Path(tmp) / "images"), "--tasks",
                            args.task, "--count", str(count)], check=True)
            folder = Path(tmp) / "images" / args.task
        images = sum(1 for _ in folder.rglob("*.png"))
        measured = run_stage(make_project(Path(tmp) / "project", args.task, folder))
    from pipeline.data.images import PARALLEL_MIN_FILES, usable_cores

    result = {"task": args.task, "folder": str(folder), "images": images, "target_ratio": TARGET_RATIO,
              "decode_workers": usable_cores() if images >= PARALLEL_MIN_FILES else 1, "measured": measured,
              "met": measured["ratio"] <= TARGET_RATIO, "under_load": True}
    print(section(result))
    # No BENCHMARKS.md section: the raw result is the record (section=None).
    common.write_result(NAME, args, env, result, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
