"""What the search bought: its best configuration against the best initial point (``tune.initial_points``).

The initial points run once (bracket -1 in the records) for ``max_epochs``, or one rung below
under data fidelity (``pipeline.tuning.bohb.initial_point_epochs``); the searched configurations
are every other trial. They are compared at equal epochs: only searched trials whose budget was
the initial points' count, since a Hyperband trial stopped at 1 or 3 epochs cannot be set
against an initial point trained for 9 (nor one trained for 9 against a point trained for 3), and
only searched trials that trained all of it: one the time budget stopped short is left out.
Both scores are validation scores (the
objective the search ranks by). The figures go to results/tune/metrics.json and to the
search's MLflow run; the report states them in a sentence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.objective import direction_of
from pipeline.tuning.records import INITIAL_BRACKET
from pipeline.tuning.results import best_record


@dataclass(frozen=True)
class SearchGain:
    objective: str
    epochs: int  # the budget both sides are compared at
    best_initial_trial: str | None
    best_initial_score: float | None
    best_searched_trial: str | None  # at ``epochs``
    best_searched_score: float | None
    best_trial: str | None  # the search's best trial at any budget (what train retrains)
    initial_point_won: bool | None  # None: no initial point finished
    # The best trial's own figures: under data fidelity the initial points stop one rung down, so the
    # configuration train retrains may be a searched one trained longer than any initial point was.
    best_trial_from: str | None = None  # "initial point" or "search"; None: no trial, or no initial point, finished
    best_trial_epochs: int | None = None
    best_trial_score: float | None = None

    @property
    def gain(self) -> float | None:
        """Searched minus initial, signed so that > 0 means the search found better (val_loss: lower)."""
        if self.best_initial_score is None or self.best_searched_score is None:
            return None
        sign = 1.0 if direction_of(self.objective) == "max" else -1.0
        return round(sign * (self.best_searched_score - self.best_initial_score), 6)

    def metrics(self) -> dict[str, Any]:
        """results/tune/metrics.json's keys (null where there is nothing to compare)."""
        return {"search_gain": self.gain, "search_gain_epochs": self.epochs,
                "best_initial_score": self.best_initial_score, "best_initial_trial": self.best_initial_trial,
                "best_searched_score": self.best_searched_score, "best_searched_trial": self.best_searched_trial,
                "best_trial": self.best_trial, "initial_point_won": self.initial_point_won,
                "best_trial_from": self.best_trial_from, "best_trial_epochs": self.best_trial_epochs}

    def run_metrics(self) -> dict[str, float]:
        """The numeric figures for the search's MLflow run (metrics are numbers; the rest go to tags)."""
        found = {"search_gain": self.gain, "best_initial_score": self.best_initial_score,
                 "best_searched_score": self.best_searched_score}
        return {k: float(v) for k, v in found.items() if v is not None}

    def run_tags(self) -> dict[str, str]:
        tags = {"search_gain_epochs": str(self.epochs)}
        if self.initial_point_won is not None:
            tags["initial_point_won"] = str(self.initial_point_won).lower()
        if self.best_trial_from is not None:
            tags["best_trial_from"] = self.best_trial_from
        if self.best_searched_trial is not None:
            tags["best_searched_trial"] = self.best_searched_trial
        return tags

    def sentence(self) -> str:
        """One line for the log and the report."""
        if self.best_initial_score is None:
            return "no initial point: every configuration was searched (search_gain not defined)"
        if self.best_searched_score is None:
            return (f"no searched configuration reached {self.epochs} epochs: the initial point (trial "
                    f"{self.best_initial_trial}, {self.objective} {self.best_initial_score:.4f}) was not challenged"
                    f"{self._searched_best_clause()}")
        gain = self.gain or 0.0
        compared = (f"at {self.epochs} epochs on validation: searched trial {self.best_searched_trial} "
                    f"{self.best_searched_score:.4f} against initial point trial {self.best_initial_trial} "
                    f"{self.best_initial_score:.4f}")
        if gain > 0:
            return f"the search found a configuration better than the initial point by {gain:+.4f} ({compared})"
        return f"the initial point was not beaten ({gain:+.4f}; {compared}){self._searched_best_clause()}"

    def _searched_best_clause(self) -> str:
        """Where the equal-epoch comparison does not decide what train retrains: the best trial is a searched
        one (under data fidelity, typically trained longer than the initial point ever was)."""
        if self.best_trial_from != "search" or self.best_trial_score is None:
            return ""
        return (f"; but the best trial overall, {self.best_trial} ({self.objective} {self.best_trial_score:.4f} "
                f"after {self.best_trial_epochs} epochs), is a searched configuration: the final model's "
                "configuration comes from the search")


def search_gain(records: list[Any], objective: str, max_epochs: int) -> SearchGain:
    """The gain from ``TrialRecord``s (trial_id, status, score, bracket, target_epochs, budget_cut_at, and
    the epochs trained, by which ties between best trials go).

    Compared at the initial points' budget (their ``target_epochs``; ``max_epochs`` where a record
    has none, or when no initial point finished).
    """
    finished = [r for r in records if _status(r) == "FINISHED" and _finite(_get(r, "score"))]
    initial = [r for r in finished if _int(_get(r, "bracket")) == INITIAL_BRACKET]
    searched = [r for r in finished if _int(_get(r, "bracket")) != INITIAL_BRACKET]
    epochs = max((_epochs(r, max_epochs) for r in initial), default=max_epochs)
    initial = [r for r in initial if _epochs(r, max_epochs) == epochs]
    # a trial tune.time_budget cut short of its epochs was not given them: it stands for no budget
    full = [r for r in searched if _epochs(r, max_epochs) == epochs and not _int(_get(r, "budget_cut_at"))]
    pick = max if direction_of(objective) == "max" else min
    best_initial = pick(initial, key=_score) if initial else None
    best_full = pick(full, key=_score) if full else None
    best = best_record(finished, objective)  # what train retrains: the same tie rule as best_hparams.json's top
    # None where no initial point is known (none given, or a tuner that does not mark them)
    best_from = None if best is None or best_initial is None else (
        "initial point" if _int(_get(best, "bracket")) == INITIAL_BRACKET else "search")
    won = None
    if best_initial is not None:
        # Ties go to the initial point: the search bought nothing it did not already have.
        won = best_full is None or _score(best_initial) == pick(_score(best_initial), _score(best_full))
    return SearchGain(
        objective=objective, epochs=epochs,
        best_initial_trial=_id(best_initial), best_initial_score=_score_or_none(best_initial),
        best_searched_trial=_id(best_full), best_searched_score=_score_or_none(best_full),
        best_trial=_id(best), initial_point_won=won,
        best_trial_from=best_from,
        best_trial_epochs=None if best is None else _epochs(best, max_epochs), best_trial_score=_score_or_none(best),
    )


def _get(record: Any, name: str) -> Any:
    return record.get(name) if isinstance(record, dict) else getattr(record, name, None)


def _status(record: Any) -> str:
    return str(_get(record, "status") or "")


def _score(record: Any) -> float:
    return float(_get(record, "score"))


def _score_or_none(record: Any) -> float | None:
    return None if record is None else _score(record)


def _id(record: Any) -> str | None:
    return None if record is None else str(_get(record, "trial_id"))


def _epochs(record: Any, max_epochs: int) -> int:
    return _int(_get(record, "target_epochs")) or max_epochs


def _int(value: Any) -> int | None:
    try:
        return None if value is None or value == "" else int(float(value))
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> bool:
    try:
        return value is not None and value != "" and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
