"""One search at a time per tuner folder: a second one fails at once instead of corrupting the first.

Two processes running KerasTuner on the same folder overwrite each other's oracle state and
trial files. ``search_lock`` holds an ``fcntl.flock`` on ``<directory>/search.lock``; the kernel
releases it when the holder exits or dies (even by SIGKILL), so a stale lock cannot block
anyone: the file's pid and host are only there to tell the user who is (or was) running.
``os.execv`` closes the descriptor (Python opens files non-inheritable), so a process that
restarts itself gives the lock up and its new image takes it again.

flock works on local file systems; over NFS it depends on the server, hence the host in the file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

try:
    import fcntl
except ImportError:  # Windows: no flock; searches there are not protected against each other
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "search.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a search lock, as written in the lock file."""

    pid: int | None
    host: str | None
    started: float | None

    def describe(self) -> str:
        if self.pid is None:
            return "pid unknown"
        local = self.host in (None, socket.gethostname())
        return f"pid {self.pid}" if local else f"pid {self.pid} on {self.host}"


def read_holder(lock_file: Path) -> Holder:
    """The holder recorded in ``lock_file`` (fields None when it is empty, e.g. between acquire and write)."""
    try:
        record = json.loads(lock_file.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    pid = record.get("pid")
    return Holder(pid if isinstance(pid, int) else None, record.get("host"), record.get("started"))


@contextmanager
def search_lock(directory: Path) -> Iterator[Holder]:
    """Hold the search lock of ``directory`` (created if needed) for the duration of the block.

    Raises ``PipelineError`` at once, without waiting, when another process holds it. Yields the
    previous holder found in the file (a finished or crashed search; pid None for a new lock).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_file = directory / LOCK_NAME
    try:
        handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise PipelineError(f"{lock_file}: cannot create the search lock ({error.strerror})") from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(lock_file)
                raise PipelineError(f"another search is running on {directory} ({holder.describe()}); "
                                    "wait for it or stop it") from None
        previous = read_holder(lock_file)
        # Rewritten in place, never unlinked: a process that opened the old file before an unlink
        # would lock that orphan and run beside the new holder.
        os.ftruncate(handle, 0)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.pwrite(handle, (json.dumps(record) + "\n").encode(), 0)
        yield previous
    finally:
        os.close(handle)  # releases the flock
