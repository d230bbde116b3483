"""What every benchmark shares: the machine and versions, the JSON result, its BENCHMARKS.md section.

Every script under ``bench/`` is one command with the same flags:

    --smoke      a seconds-long run of the same code; writes the same JSON shape with
                 ``"smoke": true`` to a temp folder (or --out) and never touches BENCHMARKS.md
    --out PATH   where the JSON goes (default: bench/results/<name>.json; smoke: a temp folder)

A full run writes ``bench/results/<name>.json`` and replaces its own section of BENCHMARKS.md,
between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, leaving the other sections alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
ENV_PREFIXES = ("MALLOC_", "LD_PRELOAD", "TF_", "OMP_", "MKL_", "KERAS_", "CUDA_VISIBLE")
LIBRARIES = ("tensorflow", "keras", "keras-tuner", "mlflow", "dvc", "optuna", "numpy", "scikit-learn", "psutil")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long run of the same code (JSON marked smoke, BENCHMARKS.md untouched)")
    parser.add_argument("--out", "--output", dest="out", type=Path, default=None,
                        help="JSON path (default bench/results/<name>.json; with --smoke a temp folder)")


def add_child_args(parser: argparse.ArgumentParser) -> None:
    """The hidden arguments of a benchmark's own child process (one run in a fresh process)."""
    for name in ("--child", "--json-out", "--workdir"):
        parser.add_argument(name, help=argparse.SUPPRESS)


def output_path(name: str, args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out)
    if args.smoke:
        return Path(tempfile.gettempdir()) / "bench-smoke" / f"{name}.json"
    return RESULTS_DIR / f"{name}.json"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def environment() -> dict[str, Any]:
    """Machine, versions and load; ``load_average`` is taken at the start, call again at the end."""
    import psutil

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": library_versions(),
        "git_commit": git_commit(),
        "load_average_start": load_average(),
        # settings that change the figures: allocator, TensorFlow threads and logging
        "env_vars": {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)},
    }


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def write_result(name: str, args: argparse.Namespace, env: dict[str, Any], result: dict[str, Any],
                 section: str | None = None) -> Path:
    """Write the JSON (common keys + ``result``); on a full run to the default place, update BENCHMARKS.md.

    ``section`` is the Markdown body of this benchmark's section (without the markers).
    """
    env = {**env, "load_average_end": load_average()}
    payload = {"benchmark": name, "smoke": bool(args.smoke), "command": command_line(), "environment": env,
               **result}
    path = output_path(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"{name}: results written to {path}")
    if section is not None and not args.smoke and path.resolve() == (RESULTS_DIR / f"{name}.json").resolve():
        update_section(name, section + "\n\n" + environment_line(payload))
        print(f"{name}: BENCHMARKS.md section updated")
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def environment_line(payload: dict[str, Any]) -> str:
    env = payload["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    load = "/".join(f"{v:.1f}" for v in (env.get("load_average_start") or []))
    load_end = "/".join(f"{v:.1f}" for v in (env.get("load_average_end") or []))
    return (f"Command: `{payload['command']}`  \n"
            f"Measured {env['date']} on {env['nproc']} CPUs ({env['cpu_model']}), {env['ram_gb']} GB RAM, "
            f"Python {env['python']}; {versions}; git {env['git_commit']}; "
            f"load average (1/5/15 min) at start {load or 'n/a'}, at end {load_end or 'n/a'}. "
            f"Raw numbers: `bench/results/{payload['benchmark']}.json`.")


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` (append if absent)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def digits_data(seed: int = 42, max_samples: int | None = None) -> tuple[dict[str, tuple[Any, Any]], dict[str, Any]]:
    """The digits splits (normalized) and their ``meta.json`` content, exactly as the preprocess stage makes them."""
    from pipeline.config import parse_params
    from pipeline.data.sources import load_digits
    from pipeline.stages.preprocess import preprocess

    params = parse_params({"seed": seed, "data": {"source": "digits", "max_samples": max_samples}})
    return preprocess(params, load_digits())


def digits_splits(seed: int = 42, max_samples: int | None = None) -> dict[str, tuple[Any, Any]]:
    """The digits data exactly as the preprocess stage makes it (split, normalized), in memory."""
    return digits_data(seed, max_samples)[0]


def quiet_tensorflow() -> None:
    """No retracing warnings or absl chatter in the benchmark output."""
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
