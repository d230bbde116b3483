"""dvc.yaml knows what each stage runs and writes, so `dvc repro` reruns exactly what a change touches.

Deps: every pipeline module a stage's command runs is a dep of the stage (the rule and the
tool that rewrites dvc.yaml: ``pipeline.devtools.stage_deps``).
Outs: every path in pipeline/paths.py is a stage output or a folder holding outputs.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from pipeline import paths
from pipeline.devtools import import_graph, stage_deps

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


def test_stage_deps_are_the_code_each_stage_runs() -> None:
    """The same rule `python -m pipeline.devtools.stage_deps --check` applies (one function, shared)."""
    problems = stage_deps.check()
    assert not problems, "dvc.yaml drifted; run `python -m pipeline.devtools.stage_deps --write`:\n" + "\n".join(
        problems)


def test_a_new_import_is_caught_and_write_fixes_it(tmp_path: Path) -> None:
    """Derived deps really follow the imports: drop one and check fails; --write puts it back, keeping the rest."""
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "dvc.yaml"
    broken.write_text(text.replace("      - pipeline/stages/evaluate.py\n", "", 1), encoding="utf-8")
    assert any(line.startswith("stage evaluate: missing ['pipeline/stages/evaluate.py']")
               for line in stage_deps.check(broken))
    assert stage_deps.write(broken)
    assert stage_deps.check(broken) == []
    assert broken.read_text(encoding="utf-8") == text  # comments, params, outs and order kept


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
