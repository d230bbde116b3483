"""The files outside ``pipeline/tracking/`` that a second tracking backend would have to change.

Read statically (``ast`` over ``pipeline/``, nothing imported). A file counts when its code, not its
prose, depends on MLflow's shapes:

- ``import mlflow`` (or ``from mlflow ...``);
- an import of a ``pipeline.tracking`` module other than the seam (``pipeline.tracking.api``) and the
  backend-neutral helpers (``context``: git and DVC tags, ``redact``: credentials in URLs);
- a string (not a docstring) in one of MLflow's formats: ``models:/``, ``runs:/``, ``sqlite:``,
  ``MLFLOW_`` environment variables;
- a read of the MLflow settings, ``<something>.mlflow`` (``params.mlflow.experiment``): only the
  backend reads its section of params.yaml.

    python -m pipeline.devtools.tracking_seam            # the count and, per file, why
    python -m pipeline.devtools.tracking_seam --check N  # exit 1 when more than N files leak

``tests/test_tracking_seam.py`` holds the count at its goal (zero: a backend is a module in
``pipeline/tracking/`` plus the ``mlflow.backend`` line of params.yaml).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.devtools import import_graph

SEAM_PACKAGE = "pipeline.tracking"
# What code outside the package may import from it: the interface and two helpers no backend changes.
NEUTRAL_MODULES = frozenset({"pipeline.tracking", "pipeline.tracking.api", "pipeline.tracking.context",
                             "pipeline.tracking.redact"})
MLFLOW_FORMATS = ("models:/", "runs:/", "sqlite:", "MLFLOW_")
# This module names the formats it looks for; it changes with them, not with a backend.
SELF = "pipeline.devtools.tracking_seam"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose, like comments)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _imported(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif node.module and node.level == 0:
        yield node.module
        yield from (f"{node.module}.{alias.name}" for alias in node.names)


def reasons(path: Path) -> list[str]:
    """Why a second backend would have to change ``path`` (empty: it would not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docs = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = list(_imported(node))
            if any(n == "mlflow" or n.startswith("mlflow.") for n in names):
                found.append(f"{line}: imports mlflow")
            # ``from pipeline.tracking import registry`` names the module registry; a name that is not a
            # module of the package (a class of api) is fine
            leaked = sorted({n for n in names if n.startswith(SEAM_PACKAGE + ".") and n not in NEUTRAL_MODULES
                             and n.count(".") == 2 and not n.split(".")[2][:1].isupper()})
            if leaked:
                found.append(f"{line}: imports {', '.join(leaked)} (not the seam pipeline.tracking.api)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            hits = [f for f in MLFLOW_FORMATS if f in node.value]
            if hits:
                found.append(f"{line}: MLflow format {hits[0]!r} in a string")
        elif isinstance(node, ast.Attribute) and node.attr == "mlflow":
            found.append(f"{line}: reads the mlflow settings (.mlflow)")
    return sorted(set(found), key=lambda r: int(r.split(":")[0]))


def leaks(root: Path = import_graph.REPO) -> dict[str, list[str]]:
    """file (relative to the repository) -> why, for every module outside ``pipeline/tracking/`` that leaks."""
    out = {}
    for module, path in sorted(import_graph.modules(root).items()):
        if module == SEAM_PACKAGE or module.startswith(SEAM_PACKAGE + ".") or module == SELF:
            continue
        why = reasons(path)
        if why:
            out[path.relative_to(root).as_posix()] = why
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.devtools.tracking_seam",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--check", type=int, metavar="N", help="exit 1 when more than N files leak")
    args = parser.parse_args(argv)
    found = leaks()
    for file, why in found.items():
        print(f"{file}: {'; '.join(why)}")
    print(f"{len(found)} file(s) outside pipeline/tracking/ a second tracking backend would change")
    return 1 if args.check is not None and len(found) > args.check else 0


if __name__ == "__main__":
    sys.exit(main())
