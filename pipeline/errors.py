"""Errors that reach the user as one clear line and exit code 2 (no traceback)."""

from __future__ import annotations


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
