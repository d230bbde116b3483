"""Imports point down the layers and never go round in a circle (static: ast over pipeline/, nothing imported).

The layers (DESIGN.md), lowest first; a module may import from its own layer or a lower one:

    0 foundation   pipeline/__init__.py and every top-level module: config, hparams, errors, paths, ...
    1 libraries    pipeline/model, pipeline/data, pipeline/tracking
    2 services     pipeline/tuning, pipeline/evaluation, pipeline/ablation, pipeline/report
    3 stages       pipeline/stages
    4 entry        pipeline/cli.py, pipeline/__main__.py, pipeline/devtools (developers' tools)

Module-level imports must not form a cycle at all (a partly initialized module is one
refactoring away from an ImportError). Lazy imports inside functions may close a loop within
a layer, but must respect the layering like every other import. And no two folders (packages
under pipeline/) import each other, by any kind of import: within a layer, dependencies between
folders point one way too (the report reads the ablation's results, never the other way round).
"""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import pytest

from pipeline.devtools import import_graph

LAYERS: dict[str, int] = {
    "pipeline.model": 1, "pipeline.data": 1, "pipeline.tracking": 1,
    "pipeline.tuning": 2, "pipeline.evaluation": 2, "pipeline.ablation": 2, "pipeline.report": 2,
    "pipeline.stages": 3,
    "pipeline.cli": 4, "pipeline.__main__": 4, "pipeline.devtools": 4,
}
FOUNDATION = 0
# Layering violations tolerated for now, as (importer, imported module). Empty it as they go; an
# entry that no longer occurs only warns. At commit 1c3302d it held
# ("pipeline.tuning.distributed", "pipeline.stages.tune"): the distributed chief borrowed the tune
# stage's open_search_run/write_outputs (and so closed the cycle stages.tune -> tuning.distributed
# -> tuning.worker -> tuning.distributed). The tune-path rework (tuning/session.py) removed it.
ALLOWED_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()


def layer_of(module: str, modules: dict[str, Path]) -> int | None:
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return layer
    top_level_file = module.count(".") == 1 and modules[module].name != "__init__.py"
    return FOUNDATION if module == import_graph.PACKAGE or top_level_file else None


def violations(root: Path = import_graph.REPO) -> list[import_graph.Edge]:
    """Imports (of any kind, lazy and type-only included) from a higher layer than the importer's."""
    modules = import_graph.modules(root)
    found = []
    for edge in import_graph.edges(root):
        source, target = layer_of(edge.source, modules), layer_of(edge.target, modules)
        # a module without a layer is reported by test_every_module_has_a_layer
        if source is not None and target is not None and target > source:
            found.append(edge)
    return found


def allowed(edge: import_graph.Edge) -> bool:
    """Listed in ALLOWED_VIOLATIONS, or the package of a listed module (importing it runs the package too)."""
    return any(edge.source == source and (edge.target == target or target.startswith(edge.target + "."))
               for source, target in ALLOWED_VIOLATIONS)


def test_every_module_has_a_layer() -> None:
    modules = import_graph.modules()
    unplaced = sorted(name for name in modules if layer_of(name, modules) is None)
    assert not unplaced, f"new package(s) without a layer: {unplaced}; add them to LAYERS in {__file__}"


def test_no_cycle_among_module_level_imports() -> None:
    found = import_graph.cycles({"module"})
    assert not found, "module-level import cycle(s): " + "; ".join(" <-> ".join(c) for c in found)


# Cycles through imports inside functions that are known and meant: the schedule registry loads the
# built-in schedules on first use, and the distributed launcher and its worker entry point refer to each
# other lazily. No new one may join them (the tracking seam's was removed by pipeline/tracking/contract.py).
KNOWN_LAZY_CYCLES = [["pipeline.lr_schedules", "pipeline.registry"],
                     ["pipeline.tuning.distributed", "pipeline.tuning.worker"]]


def test_no_new_cycle_even_through_imports_inside_functions() -> None:
    found = [c for c in import_graph.cycles({"module", "function", "typing", "dynamic"}) if c not in KNOWN_LAZY_CYCLES]
    assert not found, "import cycle(s): " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_down_the_layers() -> None:
    modules = import_graph.modules()
    found = violations()
    new = [e for e in found if not allowed(e)]
    lines = [f"{modules[e.source].relative_to(import_graph.REPO)}:{e.line}: {e.source} (layer "
             f"{layer_of(e.source, modules)}) imports {e.target} (layer {layer_of(e.target, modules)}, {e.kind})"
             for e in new]
    assert not lines, "imports from a higher layer:\n" + "\n".join(lines)
    gone = ALLOWED_VIOLATIONS - {(e.source, e.target) for e in found}
    if gone:
        warnings.warn(f"ALLOWED_VIOLATIONS lists imports that no longer exist, remove them: {sorted(gone)}",
                      stacklevel=1)


def folder_of(module: str, modules: dict[str, Path]) -> str | None:
    """``pipeline.<folder>`` for a module inside a sub-package (the package itself included), else None."""
    parts = module.split(".")
    is_package = modules[module].name == "__init__.py"
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and is_package) else None


def mutual_folders(root: Path = import_graph.REPO) -> list[tuple[str, str]]:
    """Pairs of folders that import each other (any kind of import, either direction)."""
    modules = import_graph.modules(root)
    pairs = set()
    for edge in import_graph.edges(root):
        source, target = folder_of(edge.source, modules), folder_of(edge.target, modules)
        if source and target and source != target:
            pairs.add((source, target))
    return sorted((a, b) for a, b in pairs if (b, a) in pairs and a < b)


def test_no_two_folders_import_each_other() -> None:
    found = mutual_folders()
    assert not found, "folders that import each other: " + "; ".join(f"{a} <-> {b}" for a, b in found)


@pytest.fixture
def fake_project(tmp_path: Path) -> Path:
    """A tiny pipeline/ with one import of every kind, a lazy cycle and a module-level cycle."""
    files = {
        "__init__.py": "",
        "errors.py": "",
        "stages/__init__.py": "",
        "stages/run.py": "from pipeline.tuning import search\n",
        "tuning/__init__.py": "",
        "tuning/search.py": """
            from typing import TYPE_CHECKING
            from pipeline.tuning.worker import go
            if TYPE_CHECKING:
                from pipeline.stages.run import x
            def lazy():
                from pipeline.stages import run
                from . import helper
        """,
        "tuning/worker.py": "import pipeline.tuning.search\nCMD = ['-m', 'pipeline.errors']\n",
        "tuning/helper.py": "def f():\n    from pipeline.tuning.search import lazy\n",
    }
    for name, text in files.items():
        path = tmp_path / "pipeline" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_graph_sees_every_kind_of_import(fake_project: Path) -> None:
    found = {(e.source, e.target, e.kind) for e in import_graph.edges(fake_project)}
    assert ("pipeline.tuning.search", "pipeline.tuning.worker", "module") in found
    assert ("pipeline.tuning.search", "pipeline.stages.run", "typing") in found
    assert ("pipeline.tuning.search", "pipeline.stages.run", "function") in found
    assert ("pipeline.tuning.search", "pipeline.stages", "function") in found  # its package runs too
    assert ("pipeline.tuning.search", "pipeline.tuning.helper", "function") in found  # relative import
    assert ("pipeline.tuning.worker", "pipeline.errors", "dynamic") in found  # python -m pipeline.errors
    assert not any(e.target == "pipeline.tuning" for e in import_graph.edges(fake_project)
                   if e.source.startswith("pipeline.tuning."))  # own packages are no information
    assert import_graph.cycles({"module"}, fake_project) == [["pipeline.tuning.search", "pipeline.tuning.worker"]]
    assert import_graph.cycles({"module", "function"}, fake_project) == [
        ["pipeline.stages.run", "pipeline.tuning.helper", "pipeline.tuning.search", "pipeline.tuning.worker"]]
    upward = {(e.target, e.kind) for e in violations(fake_project)}
    assert upward == {("pipeline.stages.run", "typing"), ("pipeline.stages.run", "function"),
                      ("pipeline.stages", "typing"), ("pipeline.stages", "function")}
    # stages -> tuning (module) and tuning -> stages (typing, function): a mutual pair of folders
    assert mutual_folders(fake_project) == [("pipeline.stages", "pipeline.tuning")]
