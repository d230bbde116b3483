"""dvc.yaml knows what each stage runs and writes, so `dvc repro` reruns exactly what a change touches.

Deps: ``python -m pipeline <stage>`` runs pipeline/__main__.py -> pipeline/cli.py -> the stage
module its command names; every pipeline module reachable from there (module-level and lazy
imports, modules named in strings such as ``python -m pipeline.tuning.worker``; read with ast,
see tests/import_graph.py) must be a dep of the stage, itself or through a folder dep.
Outs: every path in pipeline/paths.py is a stage output or a folder holding outputs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from pipeline import paths
from pipeline.cli import COMMANDS
from tests import import_graph

REPO = import_graph.REPO
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
STAGES: dict[str, dict] = DVC_YAML["stages"]


def entries(stage: dict, *keys: str) -> list[str]:
    """The paths under ``keys`` of a stage (an entry is a path or ``{path: options}``)."""
    return [item if isinstance(item, str) else next(iter(item)) for key in keys for item in stage.get(key) or []]


def covered(path: str, by: list[str]) -> bool:
    """``path`` is one of ``by`` or lies in a folder of ``by``."""
    return any(PurePosixPath(path) == PurePosixPath(dep) or PurePosixPath(dep) in PurePosixPath(path).parents
               for dep in by)


def stage_modules(command: str) -> set[str]:
    """The pipeline modules ``python -m pipeline <command>`` can run."""
    target = next(c.target for c in COMMANDS if c.name == command).partition(":")[0]
    # The CLI names every stage's module in a string; from it only this command's module runs.
    edges = [e for e in import_graph.edges() if e.kind in {"module", "function", "dynamic"}
             and not (e.kind == "dynamic" and e.source == "pipeline.cli")]
    return import_graph.closure(["pipeline.__main__", target], edges)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage: str) -> None:
    cmd = STAGES[stage]["cmd"].split()
    assert cmd[:3] == ["python", "-m", "pipeline"] and len(cmd) >= 4, f"{stage}: unexpected cmd {cmd}"
    files = sorted(import_graph.modules()[m].relative_to(REPO).as_posix() for m in stage_modules(cmd[3]))
    deps = [dep for dep in entries(STAGES[stage], "deps") if "${" not in dep]
    missing = [f for f in files if not covered(f, deps)]
    assert not missing, (f"dvc.yaml: stage {stage!r} runs code it does not depend on, so changing it would not "
                         f"rerun the stage; add to its deps: {missing}")


def test_every_stage_output_in_paths_py_is_in_dvc_yaml() -> None:
    outputs = [out for stage in STAGES.values() for out in entries(stage, "outs", "metrics", "plots")]
    constants = {name: value.as_posix() for name, value in vars(paths).items() if isinstance(value, Path)}
    problems = []
    for name, path in sorted(constants.items()):
        folder = any(PurePosixPath(path) in PurePosixPath(other).parents for other in constants.values())
        if folder:  # like TUNE_DIR: must hold an output
            if not any(covered(out, [path]) or covered(path, [out]) for out in outputs):
                problems.append(f"{name} = {path}: a folder with no stage output in it")
        elif not covered(path, outputs):
            problems.append(f"{name} = {path}: no stage writes it (not under any outs/metrics/plots)")
    assert not problems, "pipeline/paths.py and dvc.yaml disagree:\n" + "\n".join(problems)


def test_images_dir_is_a_preprocess_dep_that_a_fresh_clone_has() -> None:
    """DVC refuses to run with a dependency missing: the default folder is kept in git, empty."""
    assert "${data.images_dir}" in entries(STAGES["preprocess"], "deps")
    assert (REPO / "data/raw/.gitkeep").is_file()
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0

    assert not ignored("data/raw/.gitkeep"), ".gitignore must let data/raw/.gitkeep be committed"
    assert ignored("data/raw/cats/0001.png"), ".gitignore must keep the user's images out of git"
