"""KerasTuner's distributed mode: a chief (the oracle, over gRPC) and workers that train trials.

``python -m pipeline tune --workers N`` makes the stage a launcher: it opens (or resumes) the
parent MLflow run, starts the chief and N workers (``python -m pipeline.tuning.worker``) on
``tune.chief_address``, streams their lines prefixed by worker id, restarts a worker that dies
(its trial's run ends KILLED and the restarted worker retries the trial), and at the end writes
the same outputs as a one-process search from the records in the shared tuner directory.

Multi-host, the same code path, driven by KerasTuner's own variables on each host:
``KERASTUNER_TUNER_ID=chief`` -> this host runs the chief (bound to ``KERASTUNER_ORACLE_IP``)
plus ``tune.workers`` local workers and writes the outputs; any other id -> this host runs
``tune.workers`` workers of the search the chief opened (found by its search hash).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline import paths
from pipeline.errors import PipelineError, TrackingError
from pipeline.tuning.tracker import TrialTracker

READY_LINE = "chief listening on"  # what the chief prints once its oracle serves

ENV_PARAMS = "PIPELINE_TUNE_PARAMS"  # the validated params, as JSON (the overrides included)
ENV_HASH = "PIPELINE_SEARCH_HASH"
ENV_THREADS = "PIPELINE_WORKER_THREADS"
ENV_CHIEF_TIMEOUT = "PIPELINE_CHIEF_TIMEOUT"  # seconds to wait for the chief to listen (default 180)
MAX_RESTARTS = 3  # per worker; a worker that keeps dying stops the search
TRACKING_LOST_EXIT = 75  # a worker's exit code when the tracking store failed (EX_TEMPFAIL: rerun to resume)
WILDCARD = ("0.0.0.0", "::", "")


def role_from_env() -> str | None:
    """``chief`` / ``worker`` when KERASTUNER_TUNER_ID is set (a multi-host search), else None."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    if not tuner_id:
        return None
    return "chief" if "chief" in tuner_id else "worker"


@dataclass
class Child:
    """A chief or worker process and the tail of its output."""

    name: str
    role: str
    env: dict[str, str]
    popen: subprocess.Popen[str] | None = None
    restarts: int = 0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=15))
    ready: threading.Event = field(default_factory=threading.Event)
    pump: threading.Thread | None = None  # copies the process's lines to ours and to ``tail``

    def start(self) -> None:
        self.ready.clear()
        self.popen = subprocess.Popen([sys.executable, "-m", "pipeline.tuning.worker", self.role], env=self.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.pump = threading.Thread(target=self._pump, args=(self.popen,), daemon=True)
        self.pump.start()
        print(f"[launcher] started {self.name} (pid {self.popen.pid})", flush=True)

    def _pump(self, popen: subprocess.Popen[str]) -> None:
        for line in popen.stdout or ():
            line = line.rstrip()
            self.tail.append(line)
            if line.startswith(READY_LINE):
                self.ready.set()
            print(f"[{self.name}] {line}", flush=True)

    def poll(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def last_lines(self) -> list[str]:
        return [f"  {self.name}: {line}" for line in list(self.tail)[-5:]]


def run_distributed(params: Any, workers: int, role: str | None) -> int:
    """The stage in distributed mode (``role`` None: chief and workers all on this machine)."""
    from pipeline.data.store import load_meta, load_split
    from pipeline.tracking.api import open_tracker
    from pipeline.tuning.identity import search_hash

    address = os.environ.get("KERASTUNER_ORACLE_IP") or params.tune.chief_address
    port_env = os.environ.get("KERASTUNER_ORACLE_PORT")
    port = int(port_env) if port_env else params.tune.chief_port
    if role != "worker":  # fail in a second on an address the chief cannot bind
        port = pick_port(address, port, fixed=port_env is not None)
        if address in WILDCARD:  # KerasTuner's oracle has no authentication: whoever reaches it can join
            print(f"[launcher] warning: tune.chief_address {address or '(empty)'}: the chief listens on all "
                  f"interfaces (port {port}) without authentication; use 127.0.0.1 unless workers on other "
                  "hosts need it, behind a firewall", file=sys.stderr, flush=True)
    tracker = open_tracker(params)
    meta = load_meta(paths.PROCESSED_DIR)
    fingerprint = meta["fingerprint"]
    digest = search_hash(params, fingerprint)
    connect = "127.0.0.1" if address in WILDCARD else address
    if role == "worker":
        base = os.environ["KERASTUNER_TUNER_ID"]
        ids = [base] if workers == 1 else [f"{base}-{k}" for k in range(workers)]
        return _worker_host(params, ids, tracker, digest, connect, port)
    x, y = load_split(paths.PROCESSED_DIR, "train")
    return _chief_host(params, workers, tracker, digest, fingerprint, (x, y), address, connect, port)


def _chief_host(params: Any, workers: int, tracking: Any, digest: str, fingerprint: str,
                train: tuple[Any, Any], address: str, connect: str, port: int) -> int:
    from pipeline.time_budget import TimeBudget
    from pipeline.tuning.records import add_wall_seconds, collect_records, ended_run_statuses
    from pipeline.tuning.session import BUDGET_START_ENV, open_search_run, write_outputs

    budget = TimeBudget(params.tune.time_budget, key="tune.time_budget")  # from the command's start

    project_dir = Path(params.tune.directory) / f"search-{digest}"
    if not params.tune.resume and project_dir.exists():
        shutil.rmtree(project_dir)  # the chief and the workers always reload: start over here, once
    search_run = open_search_run(params, tracking, digest, fingerprint, *train)
    tracker = search_run.trial_logger()
    base = {**_base_env(params, digest, search_run.worker_environment(), port),
            BUDGET_START_ENV: repr(budget.started)}  # the workers spend the launcher's budget, not their own
    chief = Child("chief", "chief", {**base, "KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": address,
                                     "CUDA_VISIBLE_DEVICES": ""})  # the chief trains nothing
    children = _worker_children(base, [f"tuner{k}" for k in range(workers)], connect)
    print(f"[launcher] distributed search {digest}: chief on {address}:{port}, {workers} worker(s) "
          f"({base[ENV_THREADS]} CPU thread(s) each), parent run {search_run.ref}", flush=True)
    start = time.perf_counter()
    try:
        chief.start()
        _wait_ready(chief, address, port)
        for child in children:
            child.start()
        _supervise(children, chief, tracker, budget)
    except TrackingError:
        for child in [*children, chief]:
            child.stop()
        add_wall_seconds(project_dir, time.perf_counter() - start)
        raise  # the store is down: the resumed search closes the runs
    except BaseException as error:
        for child in [*children, chief]:
            child.stop()
        add_wall_seconds(project_dir, time.perf_counter() - start)
        # A trial the chief had ended as its worker was stopped keeps the status it reached (not
        # KILLED): it is not run again, so its run is the only one it gets.
        tracker.close_leftover_runs(_ended_statuses(project_dir))
        interrupted = isinstance(error, KeyboardInterrupt)
        search_run.abort("KILLED" if interrupted else "FAILED",
                         "interrupted; rerun to resume" if interrupted else f"{type(error).__name__}: {error}")
        raise
    wall_seconds = add_wall_seconds(project_dir, time.perf_counter() - start)
    if budget.is_spent():
        budget.stop()  # the workers stopped on it (each printed how far it got)
    records = collect_records(saved_search(project_dir))
    tracker.close_leftover_runs(ended_run_statuses(records))
    write_outputs(params, records, wall_seconds, search_run, fingerprint=fingerprint, digest=digest,
                  hp_names=list(type(params.search_space).model_fields), out_dir=paths.TUNE_DIR, budget=budget)
    return 0


def _worker_host(params: Any, ids: list[str], tracking: Any, digest: str, connect: str, port: int) -> int:
    timeout = float(os.environ.get(ENV_CHIEF_TIMEOUT, "600"))
    print(f"[launcher] waiting for the chief at {connect}:{port} (search {digest})", flush=True)
    if not wait_for_port(connect, port, timeout):
        raise PipelineError(f"no chief answers at {connect}:{port} after {timeout:.0f} s; start the chief host "
                            "first (KERASTUNER_TUNER_ID=chief) and check KERASTUNER_ORACLE_IP/PORT")
    search_run = _wait_for(lambda: tracking.find_search(digest), 60)
    if search_run is None:
        raise PipelineError(f"no search run with search hash {digest} in {tracking.location}: this host's params.yaml "
                            "or data/processed differ from the chief's, or it logs to another tracking store")
    from pipeline.tuning.session import BUDGET_START_ENV

    # this host's workers spend tune.time_budget from this launcher's start (hosts' clocks are their own)
    base = {**_base_env(params, digest, search_run.worker_environment(), port), BUDGET_START_ENV: repr(time.time())}
    children = _worker_children(base, ids, connect)
    try:
        for child in children:
            child.start()
        _supervise(children, None, search_run.trial_logger())
    except BaseException:
        for child in children:
            child.stop()
        raise
    print("[launcher] this host's workers are done; the chief host writes the outputs", flush=True)
    return 0


def _base_env(params: Any, digest: str, tracking_env: dict[str, str], port: int) -> dict[str, str]:
    package_root = str(Path(__file__).resolve().parents[2])
    return {
        **os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
        ENV_PARAMS: json.dumps(params.model_dump(mode="json")), ENV_HASH: digest, **tracking_env,
        "KERASTUNER_ORACLE_PORT": str(port), ENV_THREADS: "1",
    }


def _worker_children(base: dict[str, str], ids: list[str], connect: str) -> list[Child]:
    """One child per worker id: CPU threads split between them, or one GPU each when there are GPUs."""
    gpus = visible_gpus()
    threads = max(1, (os.cpu_count() or 1) // max(len(ids), 1))
    base[ENV_THREADS] = str(threads)
    children = []
    for k, worker_id in enumerate(ids):
        env = {**base, "KERASTUNER_TUNER_ID": worker_id, "KERASTUNER_ORACLE_IP": connect, ENV_THREADS: str(threads)}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]
        children.append(Child(worker_id, "worker", env))
    return children


def _wait_ready(chief: Child, address: str, port: int) -> None:
    timeout = float(os.environ.get(ENV_CHIEF_TIMEOUT, "180"))
    deadline = time.monotonic() + timeout
    while not chief.ready.wait(0.2):
        code = chief.poll()
        if code is not None:
            chief.ready.wait(1.0)  # let the pump print its last lines
            raise PipelineError([f"the chief exited (code {code}) before it listened on {address}:{port}:",
                                 *chief.last_lines()])
        if time.monotonic() > deadline:
            raise PipelineError(f"the chief did not listen on {address}:{port} within {timeout:.0f} s "
                                f"(set {ENV_CHIEF_TIMEOUT} to wait longer)")


CHIEF_ENDED_GRACE = 30.0  # seconds the workers get to leave once the chief has ended the search


def _supervise(children: list[Child], chief: Child | None, tracker: TrialTracker, budget: Any = None) -> None:
    """Wait for the workers; restart one that dies (its trial's run -> KILLED; the oracle hands the same
    trial to the restarted worker); fail if the chief dies or a worker keeps dying. Once the workers have
    left on a spent ``budget`` the chief is stopped at once: it would wait for workers to take the
    trials left (its state is saved at every trial's end, so the resumed search continues there)."""
    done: set[str] = set()
    chief_ended_at: float | None = None
    while len(done) < len(children):
        time.sleep(0.5)
        if chief is not None and (code := chief.poll()) is not None:
            if code != 0:
                raise PipelineError([f"the chief exited with code {code} during the search; "
                                     "run the command again to resume", *chief.last_lines()])
            chief_ended_at = chief_ended_at or time.monotonic()
            if time.monotonic() - chief_ended_at > CHIEF_ENDED_GRACE:
                # The chief ends only when no trial is running and every connected worker has left, so
                # the search is complete: a worker still here was slow to start (TensorFlow's import on
                # a loaded machine) and has nothing left to do. Its runs, if any, are closed afterwards.
                late = [c for c in children if c.name not in done and c.poll() is None]
                print(f"[launcher] the search is complete; stopping {len(late)} worker(s) that joined too late",
                      flush=True)
                for child in late:
                    child.stop()
                    done.add(child.name)
                continue
        for child in children:
            code = child.poll()
            if code is None or child.name in done:
                continue
            if code == 0:
                done.add(child.name)
                continue
            if code == TRACKING_LOST_EXIT:  # its last line says what failed; the store is not called again
                if child.pump is not None:
                    child.pump.join(5.0)  # the process has ended: its last lines are still in the pipe
                lines = [line for line in child.tail if line.startswith("error: ")]
                raise TrackingError(lines[-1].removeprefix("error: ") if lines else
                                    f"worker {child.name}: the tracking store failed; rerun when it is back to resume")
            closed = tracker.close_leftover_runs({}, worker=child.name)
            how = f"signal {-code}" if code < 0 else f"code {code}"
            if child.restarts >= MAX_RESTARTS:
                raise PipelineError([f"worker {child.name} exited ({how}) {child.restarts + 1} times; "
                                     "run the command again to resume", *child.last_lines()])
            child.restarts += 1
            print(f"[launcher] worker {child.name} exited ({how}); {closed} trial run(s) marked KILLED; "
                  f"restarting it ({child.restarts} of {MAX_RESTARTS}) to retry its trial", flush=True)
            child.start()
    if chief is not None and budget is not None and budget.is_spent() and chief.poll() is None:
        chief.stop()
    elif chief is not None:
        try:
            chief.popen.wait(60)  # type: ignore[union-attr]
        except subprocess.TimeoutExpired:
            print("[launcher] the chief did not stop within 60 s after the workers; stopping it", flush=True)
            chief.stop()


# --------------------------------------------------------------------------- helpers
def _ended_statuses(project_dir: Path) -> dict[str, str]:
    """run id -> the status its trial reached, from the tuner directory ({} if it cannot be read: the
    error being reported matters more, and the resumed search closes the runs again)."""
    from pipeline.tuning.records import collect_records, ended_run_statuses

    try:
        return ended_run_statuses(collect_records(saved_search(project_dir)))
    except (OSError, ValueError, TypeError):
        return {}


def saved_search(project_dir: Path) -> Any:
    """What ``search.collect_records`` needs of a tuner, read from the shared tuner directory
    (``trial_*/trial.json`` as KerasTuner's oracle reloads them) without TensorFlow."""
    trials = {}
    for path in sorted(Path(project_dir).glob("trial_*/trial.json")):
        state = json.loads(path.read_text(encoding="utf-8"))
        trials[state["trial_id"]] = SimpleNamespace(status=state.get("status"))
    return SimpleNamespace(oracle=SimpleNamespace(trials=trials), project_dir=str(project_dir),
                           get_trial_dir=lambda trial_id: Path(project_dir) / f"trial_{trial_id}")


def port_is_free(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise PipelineError(f"the chief cannot listen on {address}:{port} ({error.strerror}); "
                                "tune.chief_address must be an address of this host (127.0.0.1 by default, "
                                "0.0.0.0 for all interfaces)") from None
    return True


def pick_port(address: str, port: int, *, fixed: bool = False) -> int:
    """``port`` if free on ``address``; else any free port (not when it was set for other hosts)."""
    if port_is_free(address, port):
        return port
    if fixed:
        raise PipelineError(f"KERASTUNER_ORACLE_PORT {port} is in use on {address}; free it or pick another port "
                            "(the same on every host)")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        free = sock.getsockname()[1]
    print(f"[launcher] tune.chief_port {port} is in use on {address}; the chief uses port {free} instead",
          flush=True)
    return free


def wait_for_port(address: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2):
                return True
        except OSError:
            time.sleep(1.0)
    return False


def _wait_for(find: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(2.0)


def visible_gpus() -> list[str]:
    """GPU indices to hand out, one per worker ([] on a CPU-only machine)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]
