"""The one rule for hiding credentials in anything the pipeline prints.

Tracking URIs may carry a password (``http://user:pw@host``, ``postgresql://user:pw@host/db``)
or a token in the query string, and MLflow itself prints the server URL ("View run ... at:").
``redact`` is the rule; ``redacted_output`` applies it to every line written to stdout/stderr
and to log records, so no message needs to remember to call it. No MLflow import here: the
CLI installs it before anything heavy loads.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

MASK = "***"

# scheme://user:password@ -> scheme://user:***@ . The password runs to the *last* "@" before a
# "/" or whitespace, as urllib splits it, so an unescaped "@" in it leaks nothing either.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>]*):(?P<secret>[^\s/'\"<>]*)@")
# ?password=...&token=... in database URLs and signed artifact URLs.
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|token|access_token|auth|secret|api_key|apikey|access_key|secret_key"
    r"|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token)=)(?P<secret>[^&;\s'\"<>]+)",
    re.IGNORECASE,
)
# Secrets MLflow and the artifact stores read from the environment; their values never appear in output.
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "DATABRICKS_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)
# Shorter values would mask ordinary words all over the output.
_MIN_SECRET_CHARS = 4


def redact(text: str) -> str:
    """``text`` with URL passwords, query-string secrets and secret environment values replaced by ``***``."""
    if not text:
        return text
    if "://" in text:
        text = _USERINFO.sub(rf"\g<head>:{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(rf"\g<head>{MASK}", text)
    for name in SECRET_ENV_VARS:
        value = os.environ.get(name, "")
        if len(value) >= _MIN_SECRET_CHARS and value in text:
            text = text.replace(value, MASK)
    return text


class RedactingStream:
    """A text stream that redacts what is written and passes everything else to the wrapped one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)  # callers count what they handed over, not what was printed

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class RedactingFilter(logging.Filter):
    """Redacts a log record's message, for handlers that hold a stream of their own."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


@contextmanager
def redacted_output(loggers: tuple[str, ...] = ("", "mlflow")) -> Iterator[None]:
    """Redact all of this process's stdout/stderr and the records of ``loggers``' handlers while inside.

    MLflow writes its "View run ... at: <url>" lines straight to ``sys.stdout`` and logs through a
    stream that looks ``sys.stderr`` up at each write, so the wrapped streams catch both.
    """
    saved = sys.stdout, sys.stderr
    if sys.stdout is not None:
        sys.stdout = RedactingStream(sys.stdout)  # type: ignore[assignment]
    if sys.stderr is not None:
        sys.stderr = RedactingStream(sys.stderr)  # type: ignore[assignment]
    log_filter = RedactingFilter()
    handlers = [handler for name in loggers for handler in logging.getLogger(name).handlers]
    for handler in handlers:
        handler.addFilter(log_filter)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        for handler in handlers:
            handler.removeFilter(log_filter)
