"""pipeline.tuning.lock: one search per tuner folder, checked with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import PipelineError
from pipeline.tuning.lock import LOCK_NAME, read_holder, search_lock
from tests.conftest import REPO

HOLD = """
import sys, time
from pathlib import Path
from pipeline.tuning.lock import search_lock
with search_lock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(120)
"""
TRY = """
import sys
from pathlib import Path
from pipeline.errors import PipelineError
from pipeline.tuning.lock import search_lock
try:
    with search_lock(Path(sys.argv[1])) as previous:
        print(f"acquired; previous pid {previous.pid}")
except PipelineError as error:
    print(f"refused: {error}")
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def start_holder(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(python(HOLD, str(directory)), cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    if holder.stdout is None or holder.stdout.readline().strip() != "holding":
        holder.kill()
        holder.wait(30)
        pytest.fail("the holder process did not take the lock")
    return holder


def attempt(directory: Path) -> str:
    result = subprocess.run(python(TRY, str(directory)), cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_second_search_is_refused_at_once_and_a_dead_holder_blocks_nobody(tmp_path: Path) -> None:
    directory = tmp_path / ".tuner" / "search-abc"
    holder = start_holder(directory)
    try:
        assert attempt(directory) == (f"refused: another search is running on {directory} (pid {holder.pid}); "
                                      "wait for it or stop it")
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding it: the kernel drops a flock with its holder
        holder.wait(30)
    assert read_holder(directory / LOCK_NAME).pid == holder.pid  # the stale file still names it
    assert attempt(directory) == f"acquired; previous pid {holder.pid}"


def test_the_same_folder_twice_in_one_process_is_refused_too(tmp_path: Path) -> None:
    with search_lock(tmp_path) as previous:
        assert previous.pid is None  # a new lock file
        with pytest.raises(PipelineError, match=rf"another search is running on .* \(pid {os.getpid()}\)"):
            with search_lock(tmp_path):
                pass
    with search_lock(tmp_path) as previous:  # released at the end of the block
        assert previous.pid == os.getpid()
