"""dvc.yaml's code deps, derived from what each stage really imports.

``python -m pipeline <stage>`` runs pipeline/__main__.py -> pipeline/cli.py -> the stage module
its command names; every pipeline module reachable from there (module-level and lazy imports,
modules named in strings such as ``python -m pipeline.tuning.worker``; read statically, see
``import_graph``) must be a dep of the stage, or changing it would not rerun the stage. A
folder stands for all of its modules when the stage runs every one of them.

    python -m pipeline.devtools.stage_deps --check   # exit 1 and the differences when dvc.yaml drifted
    python -m pipeline.devtools.stage_deps --write   # rewrite the code deps of every stage in place

``--write`` replaces, within each stage's ``deps:`` list, the entries under ``pipeline/`` by the
derived ones (at the place of the first of them) and keeps every other line: data and result deps,
comments, params and outs. The tests run ``--check``'s function, so CI and dvc.yaml share one rule.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path, PurePosixPath

import yaml

from pipeline.devtools import import_graph

REPO = import_graph.REPO
DVC_YAML = REPO / "dvc.yaml"
CODE_PREFIX = "pipeline/"
_DEP_LINE = re.compile(r"^(?P<indent>\s+)- (?P<path>\S+)\s*(?P<comment>#.*)?$")
_STAGE_LINE = re.compile(r"^  (?P<name>[A-Za-z0-9_-]+):\s*$")
_KEY_LINE = re.compile(r"^    [A-Za-z_]+:")


def stage_modules(command: str) -> set[str]:
    """The pipeline modules ``python -m pipeline <command>`` can run."""
    from pipeline.cli import COMMANDS

    target = next(c.target for c in COMMANDS if c.name == command).partition(":")[0]
    # The CLI names every stage's module in a string; from it only this command's module runs.
    edges = [e for e in import_graph.edges() if e.kind in {"module", "function", "dynamic"}
             and not (e.kind == "dynamic" and e.source == "pipeline.cli")]
    return import_graph.closure(["pipeline.__main__", target], edges)


def code_files(command: str) -> set[str]:
    """The files (repo-relative, posix) of the modules a command runs."""
    modules = import_graph.modules()
    return {modules[m].relative_to(REPO).as_posix() for m in stage_modules(command)}


def collapse(files: set[str]) -> list[str]:
    """``files`` with each folder all of whose modules are in it written as the folder, sorted."""
    every = {path.relative_to(REPO).as_posix() for path in import_graph.modules().values()}
    chosen = set(files)
    folders = sorted({str(PurePosixPath(f).parent) for f in files}, key=lambda d: d.count("/"))
    for folder in folders:
        if folder == "pipeline":  # the package root is never a dep as a whole: it holds devtools too
            continue
        inside = {f for f in every if f.startswith(folder + "/")}
        if inside and inside <= files and not any(c != folder and folder.startswith(c + "/") for c in chosen):
            chosen = {c for c in chosen if not c.startswith(folder + "/")} | {folder}
    return sorted(chosen)


def stage_commands(dvc: dict) -> dict[str, str]:
    """stage name -> the pipeline command its ``cmd`` runs."""
    found = {}
    for name, stage in dvc["stages"].items():
        cmd = stage["cmd"].split()
        if cmd[:3] != ["python", "-m", "pipeline"] or len(cmd) < 4:
            raise ValueError(f"dvc.yaml: stage {name!r}: cmd {stage['cmd']!r} is not `python -m pipeline <command>`")
        found[name] = cmd[3]
    return found


def derived_deps(dvc: dict) -> dict[str, list[str]]:
    return {name: collapse(code_files(command)) for name, command in stage_commands(dvc).items()}


def _listed_code_deps(stage: dict) -> list[str]:
    items = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps") or []]
    return [d for d in items if d.startswith(CODE_PREFIX)]


def check(path: Path = DVC_YAML) -> list[str]:
    """One line per stage whose code deps differ from the derived ones (empty: in sync)."""
    dvc = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = []
    for name, wanted in derived_deps(dvc).items():
        listed = _listed_code_deps(dvc["stages"][name])
        missing, extra = sorted(set(wanted) - set(listed)), sorted(set(listed) - set(wanted))
        if missing or extra:
            problems.append(f"stage {name}: missing {missing or '-'}; not run by it {extra or '-'}")
    return problems


MARKER = "# the code this stage runs: derived, `python -m pipeline.devtools.stage_deps --write`"


def rewrite(text: str, wanted: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's ``pipeline/`` deps replaced by ``wanted[stage]``, listed last
    in its ``deps:`` under ``MARKER``; every other line is kept as it was."""
    out: list[str] = []
    stage: str | None = None
    in_deps = False
    indent = "      "

    def close_deps() -> None:
        if in_deps and stage in wanted:
            # before the blank lines and comments that end the block
            tail = []
            while out and (not out[-1].strip() or out[-1].lstrip().startswith("#")) and not out[-1].startswith("    d"):
                tail.insert(0, out.pop())
            out.extend([f"{indent}{MARKER}\n", *(f"{indent}- {path}\n" for path in wanted[stage]), *tail])

    for line in text.splitlines(keepends=True):
        header = _STAGE_LINE.match(line)
        if header or (stage is not None and _KEY_LINE.match(line)) or line.startswith(("plots:", "metrics:")):
            close_deps()
            in_deps = bool(not header and line.strip() == "deps:")
            stage = header["name"] if header else (None if not line.startswith(" ") else stage)
            out.append(line)
            continue
        if in_deps and line.strip() == MARKER:
            continue
        dep = _DEP_LINE.match(line.rstrip("\n")) if in_deps else None
        if dep:
            indent = dep["indent"]
            if dep["path"].startswith(CODE_PREFIX) and stage in wanted:
                continue
        out.append(line)
    close_deps()
    return "".join(out)


def write(path: Path = DVC_YAML) -> bool:
    """Rewrite ``path`` in place (atomically) when it drifted; True when it changed."""
    from pipeline.atomic import write_text_atomic

    text = path.read_text(encoding="utf-8")
    new = rewrite(text, derived_deps(yaml.safe_load(text)))
    if new == text:
        return False
    write_text_atomic(path, new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.devtools.stage_deps", description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml's code deps drifted")
    action.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = parser.parse_args(argv)
    if args.write:
        print("dvc.yaml: code deps rewritten" if write() else "dvc.yaml: code deps already in sync")
        return 0
    problems = check()
    for line in problems:
        print(f"dvc.yaml: {line}", file=sys.stderr)
    if problems:
        print("run `python -m pipeline.devtools.stage_deps --write` to fix", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
