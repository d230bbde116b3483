"""Progress lines with an ETA for any stage that does N units of work (trials, epochs, ablation runs).

``tune`` prints one per trial (``pipeline.tuning.progress``), ``train`` one per epoch; a stage
creates a ``Progress`` with the number of units and calls ``step`` after each one:

    progress = Progress(len(runs), "ablation run", budget=budget)
    progress.step(f"{variant} seed {seed}: val_accuracy {score:.4f}")
    # -> "ablation run 3/27: zeros seed 1: val_accuracy 0.9012, elapsed 1:02, ETA ~8:15"

The ETA is the remaining units at this invocation's mean pace, and never beyond a budget's end.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pipeline.time_budget import TimeBudget, clock


class Progress:
    """``done`` of ``total`` units; ``done`` may start above 0 (units of an earlier session)."""

    def __init__(self, total: int, label: str, *, done: int = 0, budget: TimeBudget | None = None,
                 stream: TextIO | None = None) -> None:
        self.total, self.label, self.done, self.budget = total, label, done, budget
        self.stream = stream or sys.stdout
        self._start, self._done_here = time.perf_counter(), 0

    def elapsed(self) -> float:
        """Since the command started: the budget's clock, which a search's fresh processes carry on."""
        return self.budget.spent() if self.budget is not None else self._elapsed_here()

    def _elapsed_here(self) -> float:
        return time.perf_counter() - self._start

    def advance(self, units: int = 1) -> None:
        self.done += units
        self._done_here += units

    def advance_to(self, done: int) -> None:
        """Skip to ``done`` units without counting the skipped ones as work (a model stopped early)."""
        self.done = max(self.done, done)

    def eta(self) -> float:
        """Seconds left at this session's mean pace, capped by the budget's remaining time."""
        if not self._done_here:
            return 0.0
        remaining = max(self.total - self.done, 0) * self._elapsed_here() / self._done_here  # this process's pace
        left = self.budget.left() if self.budget is not None else None
        return remaining if left is None else min(remaining, left)

    def timing(self) -> str:
        """``elapsed 1:02, ETA ~8:15`` (``, budget left 3:00`` with a budget)."""
        text = f"elapsed {clock(self.elapsed())}, ETA ~{clock(self.eta())}"
        left = self.budget.left() if self.budget is not None else None
        return text if left is None else f"{text}, budget left {clock(left)}"

    def step(self, detail: str = "", units: int = 1) -> str:
        """Count ``units`` done and print ``<label> done/total: detail, elapsed, ETA``; returns the line."""
        self.advance(units)
        line = f"{self.label} {self.done}/{self.total}: {detail + ', ' if detail else ''}{self.timing()}"
        print(line, file=self.stream, flush=True)
        return line
