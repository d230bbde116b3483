"""Writes that replace an output atomically: the previous file stays whole until the new one is complete.

A crash, Ctrl-C or a full disk halfway through a write leaves either the old output or the
new one, never a truncated mix that the next stage (or `dvc repro`'s cache) would take for
real. The temporary sits in the output's own folder (``os.replace`` is atomic only within
one file system) and keeps the output's suffix, because writers such as Keras' ``model.save``
and matplotlib's ``savefig`` choose the format from it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """This process's umask, read without changing it where the OS allows (Linux: /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (not thread-safe, hence the fallback only)
    os.umask(mask)
    return mask


def _temp_sibling(path: Path, kind: str) -> Path:
    """A fresh hidden name beside ``path``, not created: the writer creates it with the usual umask."""
    suffix = path.suffix if kind == "file" else ""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix or '.tmp'}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Data on disk before the rename, so a power cut cannot leave a renamed but empty file."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems (and folders on some platforms) refuse fsync; the rename still holds
        pass
    finally:
        os.close(handle)


@contextmanager
def replace_atomic(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); when the block succeeds it replaces ``path``.

    On any error (KeyboardInterrupt included) the temporary is removed and ``path`` is left as it was::

        with replace_atomic("models/model.keras") as tmp:
            model.save(tmp)

    ``durable`` fsyncs the file and its folder around the rename (off for scratch files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, "file")
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, OSError) and error.filename is not None and str(error.filename) == str(tmp):
            error.filename = str(path)  # the user's output, not a hidden name that no longer exists
        raise
    if durable:
        _fsync(path.parent)


@contextmanager
def open_atomic(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose content replaces ``path`` only when the block succeeds (e.g. a CSV writer)."""
    if "b" in mode:
        encoding = None
    with replace_atomic(path) as tmp, open(tmp, mode, encoding=encoding, newline=newline) as handle:
        yield handle


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> None:
    with replace_atomic(path) as tmp:
        tmp.write_text(text, encoding=encoding)


def write_json_atomic(path: str | Path, data: Any, *, indent: int = 2, sort_keys: bool = True) -> None:
    """``data`` as JSON (non-JSON values via ``str``); serialized first, so a bad value never touches ``path``."""
    write_text_atomic(path, json.dumps(data, indent=indent, sort_keys=sort_keys, default=str) + "\n")


@contextmanager
def replace_dir_atomic(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; when the block succeeds it takes the place of ``path``.

    For outputs that are a whole folder (a report with its pictures). Two renames, not one: a crash
    between them (microseconds) leaves the previous folder under a hidden ``.<name>.old-*`` name, never
    half of either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, "dir")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, OSError) and error.filename is not None and str(error.filename).startswith(str(tmp)):
            error.filename = str(path) + str(error.filename)[len(str(tmp)):]  # the output's own name
        raise
    old = _temp_sibling(path, "old")
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old.exists():
            os.replace(old, path)
        _remove(tmp)
        raise
    _remove(old)


def require_writable_folder(path: str | Path) -> None:
    """Raise ``OSError`` naming ``path`` now, before hours of work, when outputs cannot be written there.

    Creates the folder if needed, then a probe file in it (``os.access`` answers wrongly for root
    and on some network file systems).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = _temp_sibling(path / "probe", "file")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None
