"""The imports among ``pipeline/`` modules, read statically with ``ast`` (nothing is imported).

Each import is an ``Edge`` of one kind: ``module`` (runs when the importing module is
imported), ``function`` (inside a function: runs when it is called, lazily), ``typing``
(under ``if TYPE_CHECKING:``: never runs) or ``dynamic`` (a string that names a module, as
``importlib.import_module("pipeline.x")``, ``python -m pipeline.x`` or the CLI's
``"pipeline.stages.x:run"`` targets). Shared by tests/test_layers.py (cycles, layering)
and ``pipeline.devtools.stage_deps`` (what each DVC stage runs, hence its dvc.yaml deps).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "pipeline"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    kind: str  # "module" | "function" | "typing" | "dynamic"
    line: int


@cache
def modules(root: Path = REPO) -> dict[str, Path]:
    """Every module under ``root/pipeline``: dotted name -> file (a package is its ``__init__.py``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, kind: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Import statements under ``node`` with the kind of the code they sit in."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, kind
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, "typing" if kind == "typing" else "function")
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), "typing")
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), kind)
        else:
            yield from _walk(child, kind)


def _targets(node: ast.Import | ast.ImportFrom, importer: str, known: dict[str, Path]) -> set[str]:
    """The pipeline modules one import statement runs (without the importer's own parent packages)."""
    names: set[str] = set()
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:  # relative: from the importer's package upwards
            package = importer if known[importer].name == "__init__.py" else importer.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = {base} | {f"{base}.{alias.name}" for alias in node.names}
    targets = set()
    for name in names:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            continue
        while name not in known and "." in name:  # ``from pkg import attribute``: the module is pkg
            name = name.rpartition(".")[0]
        if name in known:
            targets |= {name, *_ancestors(name)}
    # A module is only ever imported once its own packages are, so those edges carry no information.
    return targets - {importer, *_ancestors(importer)}


@cache
def edges(root: Path = REPO) -> tuple[Edge, ...]:
    """Every import edge among pipeline modules, in file and line order."""
    known = modules(root)
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, kind in _walk(tree, "module"):
            found += [Edge(name, target, kind, node.lineno) for target in sorted(_targets(node, name, known))]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                target = node.value.partition(":")[0]
                if target in known and target != name and target.startswith(PACKAGE + "."):
                    found.append(Edge(name, target, "dynamic", node.lineno))
    return tuple(found)


def closure(start: Iterable[str], graph_edges: Iterable[Edge]) -> set[str]:
    """``start`` and every module reachable from it through ``graph_edges``, with their packages."""
    graph: dict[str, set[str]] = {}
    for edge in graph_edges:
        graph.setdefault(edge.source, set()).add(edge.target)
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            # importing a module runs its packages' __init__ first
            todo.extend([*graph.get(name, ()), *_ancestors(name)])
    return seen


def cycles(kinds: set[str], root: Path = REPO) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted, through edges of ``kinds``."""
    graph: dict[str, set[str]] = {name: set() for name in modules(root)}
    for edge in edges(root):
        if edge.kind in kinds:
            graph[edge.source].add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return sorted(groups)
