"""An ablation's runs in worker processes (``ablate.workers``), and the worker itself.

The runs are many short fits of small networks. On a CPU, TensorFlow's threads gain little on
them: with 2 threads a run cost a third more CPU time than with 1, for about the same wall
time (measured on digits, 2 cores). Two single-threaded processes, each training its share of
the variants, finish the same runs about a third sooner, and more on an idle machine. Each
run still depends on its seed and configuration alone, so which worker trains what changes
no number (the thread count may change the last digits, as it does for any TensorFlow run).

The workers stay up for the whole stage (``WorkerPool``): the rate selection, the verdict runs
and the seeds for power are jobs sent to the same processes, so TensorFlow starts once per
worker (~5 s on 2 busy cores) and a configuration's graph, traced in the first round, serves the
next ones. The parent (the ablate stage's process) never imports TensorFlow: it sends a free
worker its next run as one JSON line on its stdin, relays their output and collects the record
each worker prints per finished run. Workers log their nested MLflow runs themselves.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.ablation.plan import (
    SeedPlan,
    Variant,
    graph_key,
    next_run,
    seeds_of,
    unique_variants,
    with_duplicates,
)
from pipeline.errors import PipelineError

RUN_LINE = "ABLATION_RUN "  # a worker's record of one finished run, as JSON after this prefix
DONE_LINE = "ABLATION_JOB_DONE"  # a worker finished the run it was sent (after its record)


class _Worker:
    def __init__(self, name: str, settings: Path, events: queue.Queue) -> None:
        self.name, self.settings, self.events = name, settings, events
        self.tail: deque[str] = deque(maxlen=12)
        self.graphs: set[str] = set()  # the graphs it has traced (graph_key), so the runs it should take
        self.popen: subprocess.Popen[str] | None = None
        self.pump: threading.Thread | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "pipeline.ablation.workers", str(self.settings)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, bufsize=1)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        for line in self.popen.stdout or ():
            line = line.rstrip("\n")
            if not line.startswith((RUN_LINE, DONE_LINE)):
                self.tail.append(line)
            self.events.put((self, line))
        self.events.put((self, None))  # its output ended: it exited

    def send(self, job: dict[str, Any]) -> None:
        self.popen.stdin.write(json.dumps(job, default=str) + "\n")
        self.popen.stdin.flush()

    def release(self) -> None:
        """No more jobs: the worker exits (its stdin ends)."""
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:  # it exited already
                pass

    def wait(self) -> int:
        code = self.popen.wait()
        self.pump.join()
        return code

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class WorkerPool:
    """``workers`` worker processes for one ablation, started on entry and closed on exit.

    ``pool.run(variants, seeds, epochs, on_run)`` is one round: the runs handed out one at a time to
    the free workers (``next_run``), the records in plan order. A worker that fails stops the others and raises
    ``PipelineError`` with its last lines; an exception in the stage (Ctrl-C) stops them all, each
    ending its open run KILLED.
    """

    def __init__(self, workers: int, *, search_space: dict[str, Any], data_dir: str,
                 tracking: dict[str, Any] | None, precision: str = "auto") -> None:
        self.count = max(1, workers)
        self.settings = {"threads": max(1, (os.cpu_count() or 1) // self.count), "search_space": search_space,
                         "data_dir": data_dir, "tracking": tracking, "precision": precision}
        self.events: queue.Queue = queue.Queue()
        self.workers: list[_Worker] = []
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> WorkerPool:
        self._tmp = tempfile.TemporaryDirectory(prefix="ablate-")
        settings = Path(self._tmp.name) / "settings.json"
        settings.write_text(json.dumps(self.settings, default=str), encoding="utf-8")
        self.workers = [_Worker(f"worker{index}", settings, self.events) for index in range(self.count)]
        for worker in self.workers:
            worker.start()
        return self

    def release(self) -> None:
        """No more rounds: the workers start to exit (TensorFlow's teardown takes a second or two) while
        the stage goes on; leaving the ``with`` block waits for them."""
        for worker in self.workers:
            worker.release()

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        try:
            if kind is not None:
                for worker in self.workers:
                    worker.stop()
                return
            self.release()
            for worker in self.workers:
                code = worker.wait()
                if code != 0:  # after its last job: every record is in, nothing is lost
                    print(f"warning: ablation {worker.name} exited with code {code} after its last job; its last "
                          "lines:", *(f"  {line}" for line in worker.tail), sep="\n", file=sys.stderr)
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()

    def run(self, variants: Sequence[Variant], seeds: SeedPlan, epochs: int,
            on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Every variant at every seed, handed out a run at a time to whichever worker is free
        (``next_run``); a variant equal to another is trained once (``unique_variants``)."""
        unique, aliases = unique_variants(variants)
        pending = [(variant, seed) for variant in unique for seed in seeds_of(seeds, variant.name)]
        free, busy = list(self.workers), set()
        runs: list[dict[str, Any]] = []
        while pending or busy:
            while free and pending:
                worker = free.pop(0)
                variant, seed = pending.pop(next_run(pending, worker.graphs,
                                                     set().union(*(w.graphs for w in self.workers))))
                worker.graphs.add(graph_key(variant.values))
                worker.send({"variant": variant.to_dict(), "seed": seed, "epochs": epochs})
                busy.add(worker)
            worker, line = self.events.get()
            if line is None:
                if worker in busy:
                    self._fail(worker, worker.popen.wait())
                continue
            if line.startswith(RUN_LINE):
                runs.append(json.loads(line[len(RUN_LINE):]))
                if on_run is not None:
                    on_run(runs[-1])
            elif line.startswith(DONE_LINE):
                busy.discard(worker)
                free.append(worker)
            elif line.strip():  # TensorFlow's and Python's warnings: to stderr, where they would go in-process
                print(f"[{worker.name}] {line}", file=sys.stderr, flush=True)
        return with_duplicates(variants, aliases, runs, seeds, on_copy=on_run)

    def _fail(self, worker: _Worker, code: int) -> None:
        for other in self.workers:
            other.stop()
        raise PipelineError([f"ablation {worker.name} failed (exit code {code}); its last lines:",
                             *(f"  {line}" for line in worker.tail)])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str]) -> int:
    """A worker: set up from the settings file, then train each run read from stdin (one JSON line:
    variant, seed, epochs), printing its record and ``DONE_LINE``, until stdin closes."""
    settings = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by the stage: end the open run KILLED, as Ctrl-C does
    import tensorflow as tf

    # before TensorFlow runs anything, or it keeps its defaults
    tf.config.threading.set_intra_op_parallelism_threads(int(settings["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(int(settings["threads"]))
    for gpu in tf.config.list_physical_devices("GPU"):  # workers share a GPU: none may take all its memory
        tf.config.experimental.set_memory_growth(gpu, True)
    # Every run is a new model whose first evaluate traces its own predict function; after five,
    # TensorFlow warns of "excessive retracing" (a warning meant for one function retraced in a loop).
    tf.get_logger().setLevel("ERROR")

    from pipeline.ablation.runs import Splits, Trainer, model_builder
    from pipeline.config import SearchSpaceConfig
    from pipeline.data.store import load_meta, load_split
    from pipeline.model.precision import resolve_precision

    data_dir = Path(settings["data_dir"])
    meta = load_meta(data_dir)
    data = Splits(*load_split(data_dir, "train"), *load_split(data_dir, "validation"), *load_split(data_dir, "test"))
    space = SearchSpaceConfig.model_validate(settings["search_space"])
    tracker = None
    if settings.get("tracking"):
        from pipeline.tracking.api import child_runs

        tracker = child_runs(settings["tracking"])

    def on_run(record: dict[str, Any]) -> None:
        print(RUN_LINE + json.dumps(record, default=str), flush=True)

    precision = resolve_precision(settings["precision"])  # on the worker's own device
    trainer = Trainer(lambda epochs: model_builder(space, meta["input_shape"], meta["num_classes"], epochs, precision),
                      data, tracker)
    try:
        for line in sys.stdin:
            if line.strip():
                job = json.loads(line)
                trainer.run([Variant.from_dict(job["variant"])], [int(job["seed"])], int(job["epochs"]), on_run)
                print(DONE_LINE, flush=True)
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
