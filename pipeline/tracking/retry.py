"""Writes to a shared SQLite store from several processes: retry while the database is locked.

SQLite lets one writer in at a time; a worker that finds the file locked for longer than
SQLite's busy timeout gets "database is locked". Retrying with backoff is enough for a
handful of processes on one machine; many hosts need ``mlflow server`` with PostgreSQL.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
LOCKED_MARKERS = ("database is locked", "database table is locked", "database is busy")


def is_locked_error(error: BaseException) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in LOCKED_MARKERS)


def retry_locked(call: Callable[..., T], *, attempts: int = 8, first_delay: float = 0.2,
                 max_delay: float = 5.0) -> Callable[..., T]:
    """``call`` retried (exponential backoff with jitter) while it fails on a locked SQLite store."""

    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        delay = first_delay
        for attempt in range(attempts):
            try:
                return call(*args, **kwargs)
            except Exception as error:  # MlflowException and sqlalchemy's OperationalError alike
                if attempt == attempts - 1 or not is_locked_error(error):
                    raise
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, max_delay)
        raise AssertionError("unreachable")

    return wrapper


class RetryingClient:
    """An ``MlflowClient`` whose every method retries on "database is locked"."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        return retry_locked(value) if callable(value) else value
