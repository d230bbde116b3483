"""pipeline.atomic: a failed write (an exception, Ctrl-C, a full disk) leaves the previous output whole."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.atomic import (
    current_umask,
    open_atomic,
    replace_atomic,
    replace_dir_atomic,
    require_writable_folder,
    write_json_atomic,
    write_text_atomic,
)
from tests.conftest import REPO

PREVIOUS = "previous content, complete\n" * 1000  # 27 kB


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_success_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "metrics.json"  # the folder is created
    write_json_atomic(target, {"b": 1, "a": float("nan"), "path": Path("x")})
    assert target.read_text() == '{\n  "a": NaN,\n  "b": 1,\n  "path": "x"\n}\n'
    write_text_atomic(target, "second\n")
    assert target.read_text() == "second\n" and leftovers(target.parent) == []
    # a new file gets the mode a plain open() would give it (mkstemp's 0600 would hide models from others)
    assert target.stat().st_mode & 0o777 == 0o666 & ~current_umask()


@pytest.mark.parametrize("error", [RuntimeError("writer failed midway"), KeyboardInterrupt()])
def test_a_writer_failing_midway_leaves_the_previous_file(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "model.keras"
    target.write_text(PREVIOUS)
    with pytest.raises(type(error)), replace_atomic(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras"  # model.save() picks the format from it
        tmp.write_text("half a mod")
        raise error
    assert target.read_text() == PREVIOUS and leftovers(tmp_path) == []


def test_a_csv_writer_that_raises_leaves_the_previous_csv(tmp_path: Path) -> None:
    target = tmp_path / "confusion.csv"
    target.write_text(PREVIOUS)

    def rows() -> object:
        yield ["actual", "predicted"]
        yield ["1", "1"]
        raise ValueError("class index out of range")

    with pytest.raises(ValueError), open_atomic(target, newline="") as handle:
        csv.writer(handle).writerows(rows())
    assert target.read_text() == PREVIOUS and leftovers(tmp_path) == []
    with open_atomic(target, newline="") as handle:
        csv.writer(handle).writerows([["actual", "predicted"], ["1", "2"]])
    assert target.read_bytes() == b"actual,predicted\r\n1,2\r\n"


def test_a_value_json_cannot_hold_never_touches_the_file(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text(PREVIOUS)
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError):
        write_json_atomic(target, circular)
    assert target.read_text() == PREVIOUS and leftovers(tmp_path) == []


def test_a_full_disk_leaves_the_previous_file(tmp_path: Path) -> None:
    """A real write that fails with EFBIG: ``ulimit -f`` caps file size for the child process."""
    target = tmp_path / "history.csv"
    target.write_text(PREVIOUS)  # 27 kB, larger than the cap: only new writes are limited
    code = ("import sys; from pipeline.atomic import write_text_atomic; "
            "write_text_atomic(sys.argv[1], 'new row\\n' * 100_000)")
    result = subprocess.run(["bash", "-c", f'ulimit -f 8; exec "{sys.executable}" -c "$0" "$1"', code, str(target)],
                            cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and "File too large" in result.stderr, result.stderr
    assert target.read_text() == PREVIOUS and leftovers(tmp_path) == []


def test_a_failed_write_names_the_output_not_its_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError) as caught, replace_atomic(target) as tmp:
        raise OSError(28, "No space left on device", str(tmp))
    assert caught.value.filename == str(target)


def test_an_unwritable_output_folder_is_named_before_any_work(tmp_path: Path) -> None:
    require_writable_folder(tmp_path / "new" / "results")  # made when missing
    assert (tmp_path / "new" / "results").is_dir() and leftovers(tmp_path / "new" / "results") == []
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError) as caught:
        require_writable_folder(blocker / "results")  # a file where a folder should be
    assert caught.value.filename == str(blocker / "results")


def test_a_folder_output_is_swapped_in_whole_or_not_at_all(tmp_path: Path) -> None:
    report = tmp_path / "results" / "report"
    report.mkdir(parents=True)
    (report / "report.md").write_text("old report\n")
    (report / "old.png").write_bytes(b"old")
    with pytest.raises(RuntimeError), replace_dir_atomic(report) as out:
        (out / "report.md").write_text("new, half")
        raise RuntimeError("a plot failed")
    assert sorted(p.name for p in report.iterdir()) == ["old.png", "report.md"]
    assert (report / "report.md").read_text() == "old report\n"
    with replace_dir_atomic(report) as out:
        (out / "report.md").write_text("new report\n")
    assert [p.name for p in report.iterdir()] == ["report.md"]  # no picture of the old report left beside it
    assert (report / "report.md").read_text() == "new report\n"
    assert leftovers(report.parent) == []
    assert report.stat().st_mode & 0o777 == 0o777 & ~current_umask()


def test_write_processed_makes_a_folder_others_can_read(tmp_path: Path) -> None:
    """data/processed used to be 0700 (mkdtemp's mode, kept by the rename)."""
    import numpy as np

    from pipeline.stages.preprocess import write_processed

    splits = {name: (np.zeros((2, 4, 4, 1), np.float32), np.zeros(2, np.int32))
              for name in ("train", "validation", "test")}
    out = tmp_path / "data" / "processed"
    write_processed(out, splits, {"fingerprint": "x"})
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask()
    assert json.loads((out / "meta.json").read_text())["fingerprint"] == "x"
