"""One line per finished trial: n of about N, bracket/round, score, best so far, elapsed, ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pipeline.tuning.records import TrialRecord


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressPrinter:
    """Call with each finished ``TrialRecord``; ``done`` counts trials of earlier sessions too."""

    def __init__(self, expected: int, direction: str, done: int = 0, best: tuple[str, float] | None = None,
                 stream: TextIO | None = None) -> None:
        self.expected, self.direction = expected, direction
        self.done, self.best = done, best
        self.stream = stream or sys.stdout
        self._start, self._done_here = time.perf_counter(), 0

    def __call__(self, record: TrialRecord) -> None:
        self.done += 1
        self._done_here += 1
        if record.score is not None and (self.best is None or self._better(record.score, self.best[1])):
            self.best = (record.trial_id, record.score)
        elapsed = time.perf_counter() - self._start
        remaining = max(self.expected - self.done, 0) * elapsed / self._done_here
        where = f" bracket {record.bracket} round {record.round}" if record.bracket is not None else ""
        score = f"{record.score:.4f}" if record.score is not None else record.status
        best = f"{self.best[1]:.4f} (trial {self.best[0]})" if self.best else "-"
        print(f"trial {record.trial_id}: {self.done} of ~{self.expected}{where}: score {score}, "
              f"best {best}, {record.epochs_trained} epochs, elapsed {_clock(elapsed)}, "
              f"ETA ~{_clock(remaining)}", file=self.stream, flush=True)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b
