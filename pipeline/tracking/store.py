"""Which MLflow store to use, and a fail-fast check that it answers.

Default: ``sqlite:///<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``, both
absolute, so that DVC's queued experiments (run in copies under
``<repo>/.dvc/tmp/exps/``) still log to the one store the user opens with ``mlflow ui``.
``MLFLOW_TRACKING_URI`` overrides ``mlflow.tracking_uri`` which overrides the default.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import TrackingError, shorten
from pipeline.paths import repo_root
from pipeline.tracking.redact import redact

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent first use of a new store stays unprotected there
    fcntl = None  # type: ignore[assignment]

DB_NAME = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
# A new store's migration takes seconds; a holder stuck this long is broken, not busy.
STORE_LOCK_TIMEOUT = 120.0


def shared_root(start: Path | None = None) -> Path:
    """The user's repository, also from inside a DVC temporary experiment copy."""
    root = repo_root(start)
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def resolve_tracking_uri(configured: str | None = None, start: Path | None = None) -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{shared_root(start) / DB_NAME}"


def default_artifact_location(tracking_uri: str, start: Path | None = None) -> str | None:
    """Absolute artifact root for local stores (MLflow would use ./mlruns of the cwd)."""
    if tracking_uri.startswith(("http://", "https://", "databricks")):
        return None  # the server decides (mlflow server --artifacts-destination)
    return (shared_root(start) / ARTIFACTS_DIR).as_uri()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    # sqlite:////abs/path -> "/abs/path"; sqlite:///rel.db -> "rel.db" (SQLAlchemy's rule)
    rest = urllib.parse.unquote(tracking_uri[len("sqlite:///"):].split("?", 1)[0])
    return Path(rest) if rest and rest != ":memory:" else None


def check_sqlite_writable(db: Path) -> None:
    """One clear line instead of MLflow's traceback when the store cannot be written.

    SQLite writes a journal next to the database, so the folder must be writable too.
    """
    folder = db.parent
    if db.is_dir():
        raise TrackingError(f"{db}: is a folder; allowed: an MLflow SQLite database file")
    if db.exists():
        if not os.access(db, os.R_OK | os.W_OK):
            raise TrackingError(f"{db}: the MLflow database is read-only for this user; allowed: a file you can "
                                "write (chmod u+w), or another store in MLFLOW_TRACKING_URI")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise TrackingError(f"{folder}: read-only, and SQLite writes its journal next to {db.name}; "
                                "allowed: a folder you can write, or another store in MLFLOW_TRACKING_URI")
        if db.stat().st_size == 0:
            # MLflow would silently make a new store in it: say so, in case runs were lost (a truncated copy).
            print(f"warning: {db} is empty (0 bytes), not an MLflow store; a new store is created in it. "
                  "If it held runs, stop now and restore it from a backup", file=sys.stderr, flush=True)
        return
    if not folder.is_dir():
        raise TrackingError(f"{db}: the folder {folder} does not exist; allowed: a path in an existing folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(f"{db}: cannot create the MLflow database, {folder} is read-only; allowed: a folder "
                            "you can write, or another store in MLFLOW_TRACKING_URI")


@contextmanager
def store_creation_lock(db: Path | None, timeout: float = STORE_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold ``<db>.lock`` (an inter-process flock) around the first connection to a SQLite store.

    MLflow creates and migrates a new store on first use; two processes doing that at once race
    (``duplicate column name: step``) and can leave a half-migrated database. The kernel
    drops the lock when its holder dies, so a crash never leaves it stuck.
    """
    if db is None or fcntl is None:
        yield
        return
    lock_path = db.with_name(db.name + ".lock")
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                # Polled rather than blocking, so a stuck holder gives an error, not a hang.
                if time.monotonic() > deadline:
                    raise TrackingError(f"{db}: another process has held {lock_path.name} for {timeout:.0f} s "
                                        "while opening the MLflow store; wait for it or stop it") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(handle)  # also releases the lock


def _health_request(tracking_uri: str) -> urllib.request.Request:
    """A GET of ``<server>/health`` with the credentials MLflow itself would send.

    ``user:password@`` is not part of the host: urllib would try to resolve it as one. MLflow sends
    MLFLOW_TRACKING_USERNAME/PASSWORD (else MLFLOW_TRACKING_TOKEN) and, without them, requests
    falls back to the URL's user info; the same order here.
    """
    parts = urllib.parse.urlsplit(tracking_uri)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise TrackingError(f"tracking URI {redact(tracking_uri)}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise TrackingError(f"tracking URI {redact(tracking_uri)}: no host name; allowed: http(s)://host:port")
    host = parts.netloc.rpartition("@")[2]
    url = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if not (user and password) and parts.username is not None:
        user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    if user and password is not None:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        request.add_header("Authorization", f"Basic {basic}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    return request


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after an hour of training, when a tracking server is down."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    shown = redact(tracking_uri)
    request = _health_request(tracking_uri)
    context = None
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("1", "true"):
        context = ssl._create_unverified_context()  # noqa: S323 - the user asked MLflow for it too
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context):  # noqa: S310 - user's own server
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise TrackingError(refused_credentials(shown, error.code)) from None
        raise TrackingError(f"MLflow tracking server {shown} answered HTTP {error.code} on /health; "
                            "is it an MLflow server?") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = redact(shorten(str(getattr(error, "reason", error))))
        raise TrackingError(
            f"MLflow tracking server {shown} is unreachable ({reason}); start it "
            "(`mlflow server ...`) or unset MLFLOW_TRACKING_URI / mlflow.tracking_uri to use the local store"
        ) from None


def refused_credentials(shown_uri: str, code: int) -> str:
    return (f"MLflow tracking server {shown_uri} refused the credentials (HTTP {code}); check the user:password "
            "in the URI or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")


def _describe_store_error(uri: str, db: Path | None, experiment: str, error: Exception) -> str:
    text = str(error)
    # MLflow's basic-auth server answers /health to anyone: a refusal comes with the first API call
    refused = re.search(r"error code (401|403) != 200", text)
    if refused:
        return refused_credentials(redact(uri), int(refused.group(1)))
    if db is not None and "readonly database" in text.lower():
        return (f"{db}: the MLflow database is read-only; allowed: a file and folder you can write, "
                "or another store in MLFLOW_TRACKING_URI")
    # SQLAlchemy appends the SQL and a link on further lines; the first line says what went wrong.
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"MLflow store {redact(uri)}: cannot open experiment {experiment!r}: {redact(shorten(first))}"


def configure(params) -> str:  # noqa: ANN001 - pipeline.config.Params
    """Point mlflow at the store and experiment of ``params``; return the tracking URI."""
    uri = resolve_tracking_uri(params.mlflow.tracking_uri)
    check_reachable(uri)
    bound_http_retries(params.mlflow.outage_seconds)
    db = sqlite_path(uri)
    if db is not None:
        check_sqlite_writable(db)
    import mlflow

    # MLflow logs each SQL failure with its traceback before raising it; the caller turns the
    # raised error into one line, so the logged copy would only bury that line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    mlflow.set_tracking_uri(uri)
    name = params.mlflow.experiment
    try:
        # The first query creates (and migrates) a new store: one process at a time.
        with store_creation_lock(db):
            experiment = mlflow.get_experiment_by_name(name)
            if experiment is None:
                mlflow.create_experiment(name, artifact_location=default_artifact_location(uri))
            mlflow.set_experiment(name)
    except TrackingError:
        raise
    except Exception as error:  # noqa: BLE001 - any store failure becomes one clear line
        raise TrackingError(_describe_store_error(uri, db, name, error)) from None
    return uri


# MLflow reads these for every HTTP request; a user's own setting wins.
_RETRY_ENV = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT")
_RETRIES, _BACKOFF = 3, 2  # waits of about 2 + 4 + 8 s between the attempts


def bound_http_retries(outage_seconds: int) -> None:
    """Make a dead tracking server fail a call within about ``outage_seconds`` (attempts and waits)."""
    waits = sum(_BACKOFF * 2**k for k in range(_RETRIES))
    timeout = max(2, (outage_seconds - waits) // (_RETRIES + 1))
    for name, value in zip(_RETRY_ENV, (_RETRIES, _BACKOFF, timeout), strict=True):
        os.environ.setdefault(name, str(value))
