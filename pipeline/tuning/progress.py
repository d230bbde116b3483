"""One line per finished trial: n of about N, bracket/round, score, best so far, elapsed, ETA.

The elapsed/ETA part is ``pipeline.progress.Progress``, which train (per epoch) and ablate (per run)
print the same way.
"""

from __future__ import annotations

from typing import TextIO

from pipeline.progress import Progress
from pipeline.time_budget import TimeBudget
from pipeline.tuning.records import TrialRecord


class ProgressPrinter:
    """Call with each finished ``TrialRecord``; ``done`` counts trials of earlier sessions too."""

    def __init__(self, expected: int, direction: str, done: int = 0, best: tuple[str, float] | None = None,
                 stream: TextIO | None = None, budget: TimeBudget | None = None) -> None:
        self.direction, self.best = direction, best
        self.progress = Progress(expected, "trial", done=done, budget=budget, stream=stream)

    @property
    def done(self) -> int:
        return self.progress.done

    @done.setter
    def done(self, value: int) -> None:
        self.progress.done = value

    def __call__(self, record: TrialRecord) -> None:
        self.progress.advance()
        if record.score is not None and (self.best is None or self._better(record.score, self.best[1])):
            self.best = (record.trial_id, record.score)
        where = f" bracket {record.bracket} round {record.round}" if record.bracket is not None else ""
        score = f"{record.score:.4f}" if record.score is not None else record.status
        best = f"{self.best[1]:.4f} (trial {self.best[0]})" if self.best else "-"
        print(f"trial {record.trial_id}: {self.done} of ~{self.progress.total}{where}: score {score}, "
              f"best {best}, {record.epochs_trained} epochs, {self.progress.timing()}",
              file=self.progress.stream, flush=True)

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "max" else a < b
