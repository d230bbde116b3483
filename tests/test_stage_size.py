"""The stage modules stay thin: each function reads in one screen (<= 60 lines), the work lives in the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STAGES = Path(__file__).resolve().parents[1] / "pipeline" / "stages"
MAX_LINES = 60
# Long functions yet to be split (none today): an entry that no longer matches a long function fails.
NOT_YET_THIN: set[str] = set()


def long_functions(folder: Path, limit: int = MAX_LINES) -> list[str]:
    """``file:line name (n lines)`` for every function or method over ``limit`` lines, decorators and
    docstring included, nested functions counted within their parent and on their own."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - first + 1
                if length > limit:
                    found.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_stage_function_is_longer_than_60_lines() -> None:
    assert STAGES.is_dir() and len(list(STAGES.glob("*.py"))) >= 9
    found = {entry.split(":")[0] + " " + entry.split()[1]: entry for entry in long_functions(STAGES)}
    assert sorted(set(found) - NOT_YET_THIN) == []
    assert sorted(NOT_YET_THIN - set(found)) == [], "thin now: remove it from NOT_YET_THIN"


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "stage.py").write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n", encoding="utf-8")
    assert long_functions(tmp_path) == [f"stage.py:5 long ({MAX_LINES + 1} lines)"]
    with pytest.raises(AssertionError):
        assert long_functions(tmp_path) == []
