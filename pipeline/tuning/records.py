"""What the stage keeps about each trial, next to KerasTuner's own state in the trial folder.

The record survives an interruption (it lives under ``tune.directory``), so the outputs of a
resumed search still list the trials of earlier sessions, with or without a tracking store.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.tuning.tracker import FAILED, FINISHED, KILLED

RECORD_NAME = "pipeline_trial.json"
STATE_NAME = "pipeline_search.json"  # the search's own totals, next to the tuner state
EPOCH_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
INITIAL_BRACKET = -1  # pipeline.tuning.bohb runs tune.initial_points outside the brackets with this tag


@dataclass
class TrialRecord:
    trial_id: str
    status: str = "RUNNING"
    run_id: str | None = None
    bracket: int | None = None
    round: int | None = None
    continued_from: str | None = None
    initial_epoch: int = 0
    target_epochs: int | None = None
    source: str | None = None  # how the sampler drew its configuration (pipeline.tuning.prior); None: unknown
    train_rows: int | None = None  # training rows of its epochs (fewer on a low rung under data fidelity)
    budget_cut_at: int | None = None  # epochs done when tune.time_budget stopped it short of target_epochs
    values: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # {"epoch": absolute, metric: value}
    seconds: float = 0.0  # its epochs' wall time
    trial_seconds: float | None = None  # its whole wall time: run start to end, build and bookkeeping included
    params_count: int | None = None
    score: float | None = None
    error: str | None = None

    @property
    def is_initial_point(self) -> bool:
        """One of ``tune.initial_points`` (as the default BOHB marks them; other tuners do not)."""
        return self.bracket == INITIAL_BRACKET

    @property
    def epochs_trained(self) -> int:
        return len(self.history)

    @property
    def seconds_per_epoch(self) -> float | None:
        return self.seconds / len(self.history) if self.history else None

    def best_epoch(self, objective: str, direction: str) -> dict[str, float] | None:
        """The epoch row with the best finite objective (the one KerasTuner scored)."""
        rows = [r for r in self.history if _finite(r.get(objective))]
        if not rows:
            return None
        pick = max if direction == "max" else min
        return pick(rows, key=lambda r: r[objective])

    def save(self, trial_dir: str | Path) -> None:
        path = Path(trial_dir) / RECORD_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), default=_json_default), encoding="utf-8")
        tmp.replace(path)  # never a half-written record after a kill

    @classmethod
    def load(cls, trial_dir: str | Path) -> TrialRecord | None:
        path = Path(trial_dir) / RECORD_NAME
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


# Read by the search loop and by the distributed launcher, which must not load TensorFlow for them.
def collect_records(tuner: Any) -> list[TrialRecord]:
    """A record per trial the oracle knows, in trial-id order (trials without one: status only)."""
    records = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        record = TrialRecord.load(tuner.get_trial_dir(trial_id)) or TrialRecord(trial_id=trial_id)
        if trial.status == "COMPLETED":
            record.status = FINISHED
        elif trial.status == "FAILED":
            record.status = FAILED
        elif record.status == "RUNNING":
            record.status = KILLED
        records.append(record)
    return records


def ended_run_statuses(records: list[TrialRecord]) -> dict[str, str]:
    """run id -> final status, for child runs a kill left RUNNING after their trial had ended."""
    return {r.run_id: r.status for r in records if r.run_id and r.status in (FINISHED, FAILED)}


def add_wall_seconds(project_dir: Path, seconds: float) -> float:
    """Add this session's wall time to the search's total (kept next to the tuner state); return the total."""
    state_path = Path(project_dir) / STATE_NAME
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"wall_seconds": 0.0}
    state["wall_seconds"] += seconds
    write_text_atomic(state_path, json.dumps(state))
    return state["wall_seconds"]
