"""Wall-clock budgets (``tune.time_budget``, ``train.time_budget``): parsing and the clock that spends them.

Pure Python, so ``pipeline.config`` can validate a budget before TensorFlow loads. A budget is
counted per invocation of a stage (as Optuna's ``timeout``): a resumed search gets its budget anew.
"""

from __future__ import annotations

import re
import time
from typing import Any

ALLOWED_FORMS = "null, a number of seconds > 0, or a duration such as 90s, 45m, 2h, 1h30m"
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms])")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*[hms]\s*)+")


def parse_duration(value: Any) -> float | None:
    """``None`` -> None; ``90``, ``"90"``, ``"90s"``, ``"45m"``, ``"2h"``, ``"1h30m"`` -> seconds (> 0).

    Raises ``ValueError`` naming the allowed forms for anything else (a bool, 0, a negative number,
    an unknown unit).
    """
    if value is None:
        return None
    if isinstance(value, bool):  # YAML's yes/no: a bool is an int to Python
        raise ValueError(f"allowed: {ALLOWED_FORMS}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
        seconds = float(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip().lower()):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value.lower()))
    else:
        raise ValueError(f"allowed: {ALLOWED_FORMS}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"allowed: {ALLOWED_FORMS}")
    return seconds


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05`` (the progress lines' format)."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TimeBudget:
    """A wall-clock budget started now (or at ``started``, a ``time.time()``: a process continuing the
    same invocation); ``seconds`` None: no budget, never spent.

    Shared, not copied: KerasTuner deep-copies a trial's callbacks, and every copy must read and mark
    this one clock.
    """

    def __init__(self, seconds: float | None, *, key: str = "time_budget", started: float | None = None) -> None:
        self.seconds, self.key = seconds, key
        self.started = time.time() if started is None else started
        self.stopped = False  # set by whatever the budget stopped (a trial, a search, a model)
        self.what_stopped: str | None = None  # e.g. "trial 0004 at epoch 2 of 9"
        self.closed = False  # spent ahead of the clock: what is left would not hold another epoch
        # this process continues an invocation whose earlier process spent part of this budget on trials
        # (``tune.trials_per_process``): nothing of it is this process's to start regardless
        self.continues = False

    def __deepcopy__(self, memo: dict[int, Any]) -> TimeBudget:
        return self

    def __copy__(self) -> TimeBudget:
        return self

    @property
    def limited(self) -> bool:
        return self.seconds is not None

    def spent(self) -> float:
        return max(time.time() - self.started, 0.0)

    def left(self) -> float | None:
        return None if self.seconds is None else max(self.seconds - self.spent(), 0.0)

    def is_spent(self) -> bool:
        return self.seconds is not None and (self.closed or self.spent() >= self.seconds)

    def close(self, what: str | None = None) -> None:
        """Spend what is left now: it would not hold another epoch (``StopAtDeadline``); nothing starts after."""
        self.closed = True
        self.stop(what)

    def stop(self, what: str | None = None) -> None:
        """Record that the budget stopped something (the first thing it stopped is named)."""
        self.stopped = True
        self.what_stopped = self.what_stopped or what

    def metrics(self) -> dict[str, float]:
        """``time_budget_s`` (when there is a budget), ``time_spent_s``, ``stopped_by_budget`` (0/1)."""
        out = {"time_spent_s": round(self.spent(), 3), "stopped_by_budget": float(self.stopped)}
        if self.seconds is not None:
            out["time_budget_s"] = self.seconds
        return out

    def describe(self) -> str:
        """``time budget 0:02 (tune.time_budget) spent after 0:03``: the start of the one line saying so."""
        return f"time budget {clock(self.seconds or 0)} ({self.key}) spent after {clock(self.spent())}"
