"""An ablation's runs in worker processes (``ablate.workers``), and the worker itself.

The runs are many short fits of small networks. On a CPU, TensorFlow's threads gain little on
them: with 2 threads a run cost a third more CPU time than with 1, for about the same wall
time (measured on digits, 2 cores). Two single-threaded processes, each training its share of
the variants, finish the same runs about a third sooner, and more on an idle machine. Each
run still depends on its seed and configuration alone, so which worker trains what changes
no number (the thread count may change the last digits, as it does for any TensorFlow run).

The parent (the ablate stage's process) never imports TensorFlow: it writes one job file per
worker, starts ``python -m pipeline.ablation.workers JOB``, relays their output,
and reads back their records. Workers log their nested MLflow runs themselves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.ablation.plan import SeedPlan, Variant, share_out, unique_variants, with_duplicates, work_groups
from pipeline.errors import PipelineError

RUN_LINE = "ABLATION_RUN "  # a worker's record of one finished run, as JSON after this prefix


class _Worker:
    def __init__(self, name: str, job: Path, on_line: Callable[[str, str], None]) -> None:
        self.name, self.job, self.on_line = name, job, on_line
        self.tail: deque[str] = deque(maxlen=12)
        self.popen: subprocess.Popen[str] | None = None
        self.pump: threading.Thread | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-m", "pipeline.ablation.workers", str(self.job)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        for line in self.popen.stdout or ():
            line = line.rstrip("\n")
            if not line.startswith(RUN_LINE):
                self.tail.append(line)
            self.on_line(self.name, line)

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


def run_in_workers(variants: Sequence[Variant], seeds: SeedPlan, epochs: int, *, workers: int,
                   search_space: dict[str, Any], data_dir: str, tracking: dict[str, Any] | None,
                   on_run: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every variant at every seed, shared out to ``workers`` processes; the records in plan order.

    Variants of one graph go to the same worker (they share its traced model); a variant equal to
    another is trained once (``unique_variants``). A failed worker stops the others and raises
    ``PipelineError`` with its last lines.
    """
    unique, aliases = unique_variants(variants)
    shares = share_out(work_groups(unique), workers)
    threads = max(1, (os.cpu_count() or 1) // len(shares))
    lock = threading.Lock()

    def on_line(name: str, line: str) -> None:
        with lock:
            if line.startswith(RUN_LINE):
                if on_run is not None:
                    on_run(json.loads(line[len(RUN_LINE):]))
            elif line.strip():  # TensorFlow's and Python's warnings: to stderr, where they would go in-process
                print(f"[{name}] {line}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ablate-") as tmp:
        procs = []
        for index, share in enumerate(shares):
            job = Path(tmp) / f"job-{index}.json"
            job.write_text(json.dumps({
                "variants": [v.to_dict() for v in share],
                "seeds": dict(seeds) if isinstance(seeds, dict) else list(seeds), "epochs": epochs, "threads": threads,
                "search_space": search_space, "data_dir": data_dir, "tracking": tracking,
                "out": str(Path(tmp) / f"runs-{index}.json")}, default=str), encoding="utf-8")
            procs.append(_Worker(f"worker{index}", job, on_line))
        try:
            for proc in procs:
                proc.start()
            codes = [proc.wait() for proc in procs]
        except BaseException:
            for proc in procs:
                proc.stop()
            raise
        failed = [(proc, code) for proc, code in zip(procs, codes, strict=True) if code != 0]
        if failed:
            proc, code = failed[0]
            raise PipelineError([f"ablation {proc.name} failed (exit code {code}); its last lines:",
                                 *(f"  {line}" for line in proc.tail)])
        runs = [record for index in range(len(shares))
                for record in json.loads((Path(tmp) / f"runs-{index}.json").read_text(encoding="utf-8"))]
    return with_duplicates(variants, aliases, runs, seeds, on_copy=on_run)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str]) -> int:
    """A worker: train the job's variants at its seeds, print each record, write them all to ``out``."""
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _interrupt)  # stopped by the stage: end the open run KILLED, as Ctrl-C does
    import tensorflow as tf

    # before TensorFlow runs anything, or it keeps its defaults
    tf.config.threading.set_intra_op_parallelism_threads(int(job["threads"]))
    tf.config.threading.set_inter_op_parallelism_threads(int(job["threads"]))
    for gpu in tf.config.list_physical_devices("GPU"):  # workers share a GPU: none may take all its memory
        tf.config.experimental.set_memory_growth(gpu, True)
    # Every run is a new model whose first evaluate traces its own predict function; after five,
    # TensorFlow warns of "excessive retracing" (a warning meant for one function retraced in a loop).
    tf.get_logger().setLevel("ERROR")

    from pipeline.ablation.runs import Splits, model_builder, run_ablation
    from pipeline.config import SearchSpaceConfig
    from pipeline.data.store import load_meta, load_split

    data_dir = Path(job["data_dir"])
    meta = load_meta(data_dir)
    data = Splits(*load_split(data_dir, "train"), *load_split(data_dir, "validation"), *load_split(data_dir, "test"))
    space = SearchSpaceConfig.model_validate(job["search_space"])
    tracker = None
    if job.get("tracking"):
        from pipeline.tracking.api import child_runs

        tracker = child_runs(job["tracking"])

    def on_run(record: dict[str, Any]) -> None:
        print(RUN_LINE + json.dumps(record, default=str), flush=True)

    variants = [Variant.from_dict(item) for item in job["variants"]]
    build = model_builder(space, meta["input_shape"], meta["num_classes"], int(job["epochs"]))
    runs = run_ablation(variants, job["seeds"], build, data, int(job["epochs"]), tracker, on_run)
    Path(job["out"]).write_text(json.dumps(runs, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
