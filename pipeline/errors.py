"""Errors that reach the user as one clear line and exit code 2 (no traceback)."""

from __future__ import annotations

import reprlib
from typing import Any

# A value echoed in an error line is cut here: an error must fit on a screen, whatever the input.
MAX_VALUE_CHARS = 200

# reprlib stops at these depths/lengths without walking the rest, so even a YAML alias bomb
# (a few nested lists that expand to hundreds of millions of items) is shown in microseconds.
_SHORT_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT_REPR.maxlevel = 3
_SHORT_REPR.maxtuple = _SHORT_REPR.maxlist = _SHORT_REPR.maxdict = _SHORT_REPR.maxset = 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = MAX_VALUE_CHARS
_SHORT_REPR.maxlong = 60


def shorten(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with a marker saying how much was left out."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}... ({len(flat) - limit} more characters)"


def short_repr(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """``repr(value)`` bounded in length *and* in the work done to build it."""
    return shorten(_SHORT_REPR.repr(value), limit)


class PipelineError(Exception):
    """A problem with the user's input (params, data, files, services): exit code 2."""

    exit_code = 2

    def __init__(self, lines: list[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class ConfigError(PipelineError):
    """``params.yaml`` or a command-line override is invalid."""


class DataError(PipelineError):
    """The input data cannot be loaded, split or used."""


class TrackingError(PipelineError):
    """The MLflow tracking store or registry cannot be used."""
