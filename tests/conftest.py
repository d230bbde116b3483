"""Shared fixtures: tiny projects in temp folders, a CLI runner, generated images."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# One TensorFlow thread per process, for the tests only (here and in every subprocess they start): the
# suite runs its tiny models in 2 pytest workers plus their subprocesses on as few as 2 cores, where
# TensorFlow's default pools (a thread per core, each) oversubscribe them. Measured on a 5-epoch fit of
# the recipe on digits: 17% less CPU. The pipeline's own settings (distributed and ablation workers
# set their threads) still apply.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

# Each test file's seconds in the last recorded run (``pytest --record-durations`` rewrites it). Files are
# handed to the workers longest first (``--no-loadscope-reorder`` keeps this order; xdist's own puts files
# with many tests first): with a 70-second end-to-end file last, one worker ran alone for a minute at the
# end. A stale or missing entry changes only the order, never what runs; a new file counts as the longest.
DURATIONS = REPO / "tests" / "durations.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test file's seconds to {DURATIONS.relative_to(REPO)} (the order files run in)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    longest = max(seconds.values(), default=0.0) + 1.0
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::")[0], longest))  # stable: files stay whole


_seconds_by_file: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # in the controlling process too: xdist replays every worker's reports there
    path = report.nodeid.split("::")[0]
    _seconds_by_file[path] = _seconds_by_file.get(path, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not config.getoption("record_durations") or hasattr(config, "workerinput"):  # workers: their share only
        return
    from pipeline.atomic import write_json_atomic

    # a run of some files updates theirs and keeps the others' entries
    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    seconds.update({path: round(s, 1) for path, s in _seconds_by_file.items()})
    write_json_atomic(DURATIONS, dict(sorted(seconds.items(), key=lambda kv: -kv[1])), indent=1, sort_keys=False)


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` in a subprocess, as a user would run it."""
    full_env = {**os.environ, "PYTHONPATH": str(cwd), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def write_params(project: Path, **sections: dict) -> Path:
    """Update ``project/params.yaml`` section by section (nested keys merged one level deep)."""
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name].update(values)
        else:
            raw[name] = values
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def copy_project(dest: Path) -> Path:
    """The project's code and configuration, without generated state."""
    dest.mkdir(parents=True, exist_ok=True)
    # __pycache__ too (copied with its sources' times, so still valid): a subprocess in the copy would
    # otherwise compile the whole package again (~1 s of CPU per project)
    shutil.copytree(REPO / "pipeline", dest / "pipeline")
    for name in ("params.yaml", "dvc.yaml", ".gitignore", ".dvcignore"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    # preprocess depends on the images folder, which a clone has (empty but for .gitkeep)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (dest / "data" / "raw" / ".gitkeep").touch()
    give_own_chief_port(dest / "params.yaml")
    return dest


def load_script(name: str, path: Path) -> ModuleType:
    """A script that is not a package module (``bench/*.py``) imported as ``name``; its folder is on
    ``sys.path`` so that it finds its siblings (``big_folders`` imports ``tasks``)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def give_own_chief_port(params: Path) -> None:
    """A distributed search's chief in this copy listens on a port of its own.

    Tests run in parallel (pytest-xdist): two copies asking for the shipped port at the same moment
    could both see it free and one fail to bind. A text edit, so the file keeps its comments.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = params.read_text()
    assert "chief_port: 8000 " in text, "params.yaml no longer ships tune.chief_port 8000: update this fixture"
    params.write_text(text.replace("chief_port: 8000 ", f"chief_port: {port} ", 1))


@pytest.fixture(scope="session")
def new_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store exactly as MLflow creates a new one (schema migrated, nothing logged).

    Copied into each test's folder by ``project`` and ``store``: MLflow migrates a new store's
    schema in every process that creates one (~2 CPU-seconds, a tenth of a small end-to-end test's
    cost on 2 cores), and few tests are about creating a store. Those that are make their own:
    ``tests/test_faults.py`` (concurrent creation, an empty file), ``tests/test_tracking_seam.py``
    (no store at all).
    """
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("new-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def seed_store(template: Path, db: Path) -> Path:
    """``db`` as a new store (a copy of ``new_store_template``); its folder is created."""
    db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, db)
    return db


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store_template: Path) -> Path:
    """A copy of the project in a temp folder, made the working directory, with its own (new) MLflow store."""
    root = copy_project(tmp_path / "project")
    seed_store(new_store_template, root / "mlflow.db")
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


@pytest.fixture
def dvc_project(project: Path) -> Path:
    """``project`` as a git + DVC repository (DVC analytics off, nothing committed yet)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "test"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=project, check=True, env=env, capture_output=True)
    return project


@pytest.fixture
def make_images() -> Callable[..., Path]:
    """Write a folder of class sub-folders with generated PNGs: ``make_images(root, {"a": 5, "b": 5})``."""
    from PIL import Image

    def make(root: Path, counts: dict[str, int], size: tuple[int, int] = (12, 10), seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        for index, (name, count) in enumerate(counts.items()):
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                # each class has its own brightness so a model could tell them apart
                base = 40 + 60 * index
                pixels = np.clip(base + rng.normal(0, 10, size=size), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode="L").save(folder / f"{name}_{i:03d}.png")
        return root

    return make


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, new_store_template: Path) -> str:
    """A new SQLite MLflow store in a temp folder, made the working directory: its tracking URI."""
    seed_store(new_store_template, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
