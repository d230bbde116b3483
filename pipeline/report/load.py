"""Read the tune stage's outputs: trials.csv, history.csv, best_hparams.json, meta.json.

The contract (written by ``pipeline.stages.tune``): one row per KerasTuner trial with
``trial_id, status, score, objective, ...`` and one ``hp.<key>`` column per search-space
key; a Hyperband continuation is its own row with ``continued_from`` set.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.objective import direction_of

HP_PREFIX = "hp."
REQUIRED_COLUMNS = ("trial_id", "status", "score")
# Neither finished nor failed: still in flight, or killed by an interrupted search (not the
# hyperparameters' fault), or not started (NOT_STARTED: tune.time_budget). Statuses are the tune stage's
# (FINISHED/FAILED/KILLED/NOT_STARTED) or KerasTuner's.
PENDING_STATUSES = frozenset({"RUNNING", "IDLE", "KILLED", "NOT_STARTED", "SCHEDULED"})
FINISHED_STATUSES = frozenset({"FINISHED", "COMPLETED", "STOPPED"})
ID_COLUMNS = {"trial_id": str, "continued_from": str}  # "0007" must stay "0007", not 7


@dataclass
class Trials:
    """All trials of one search, with ``finished``/``failed`` flags per row."""

    table: pd.DataFrame  # pending trials already left out
    objective: str
    maximize: bool
    source: str
    pending: int = 0
    notes: list[str] = field(default_factory=list)
    # trial id -> the trial it continues (Hyperband rounds); kept when the table is collapsed to chains
    parents: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> pd.DataFrame:
        return self.table[self.table["finished"]]

    @property
    def n_failed(self) -> int:
        return int((~self.table["finished"]).sum())

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def best_index(self, frame: pd.DataFrame) -> Any:
        """Index of the best finished row of ``frame`` (None when it has none)."""
        scores = frame.loc[frame["finished"], "score"]
        if scores.empty:
            return None
        return scores.idxmax() if self.maximize else scores.idxmin()

    def best_value(self, scores: pd.Series) -> float:
        scores = scores.dropna()
        if scores.empty:
            return math.nan
        return float(scores.max() if self.maximize else scores.min())

    def sorted_finished(self) -> pd.DataFrame:
        return self.finished.sort_values("score", ascending=not self.maximize, kind="stable")


def maximized(objective: str) -> bool:
    """The pipeline's one rule (``pipeline.objective``): losses go down, the rest up."""
    return direction_of(objective) == "max"


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=ID_COLUMNS)
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: empty file, no {what}; run `python -m pipeline tune` again") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not a readable CSV file ({error})") from None


def load_trials(path: str | Path, default_objective: str = "val_accuracy") -> Trials:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline tune` (or `dvc repro`) first")
    table = _read_csv(path, "trials")
    if not path.read_bytes().endswith(b"\n"):
        # The tune stage writes trials.csv whole (atomically) with a newline after every row: a file
        # that ends mid-row was cut, and its last row's missing cells would read as a finished trial.
        raise PipelineError(f"{path}: the last row is cut off (no newline at the end); "
                            "run `python -m pipeline tune` again to rewrite it from the trial records")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise PipelineError(f"{path}: missing column(s) {', '.join(missing)}; expected the tune stage's trials.csv")
    if table.empty:
        raise PipelineError(f"{path}: no trials in the file; the search recorded nothing, run it again")

    table = table.copy()
    table["trial_id"] = table["trial_id"].astype(str)
    table["status"] = table["status"].fillna("UNKNOWN").astype(str).str.strip().str.upper()
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    objectives = table["objective"].dropna().astype(str) if "objective" in table.columns else pd.Series([], dtype=str)
    objective = objectives.mode().iloc[0] if not objectives.empty else default_objective
    notes = []
    if objectives.nunique() > 1:
        notes.append(f"trials.csv mixes objectives ({', '.join(sorted(objectives.unique()))}); "
                     f"the report uses {objective}.")

    parents = parent_map(table)
    pending_mask = table["status"].isin(PENDING_STATUSES)
    pending = int(pending_mask.sum())
    table = table[~pending_mask].reset_index(drop=True)
    if table.empty:
        raise PipelineError(f"{path}: all {pending} trial(s) are running or were killed; no finished or failed "
                            "trial to report")
    table["finished"] = table["status"].isin(FINISHED_STATUSES) & np.isfinite(table["score"])
    for column in ("accuracy", "val_accuracy", "loss", "val_loss", "epochs_trained", "seconds", "target_epochs",
                   "initial_epoch", "round", "bracket"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    if pending:
        notes.append(f"{pending} trial(s) still running, idle, killed by an interrupted search or not started "
                     "(tune.time_budget) are left out.")
    return Trials(table=table, objective=objective, maximize=maximized(objective), source=str(path),
                  pending=pending, notes=notes, parents=parents)


def trial_id_text(value: object) -> str:
    """A trial id as trials.csv spells it ("0007"), also when a reader turned it into 7.0; "" for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    if text.lower() in ("nan", "none"):
        return ""
    return text[:-2] if text.endswith(".0") and text[:-2].isdigit() else text


def parent_map(table: pd.DataFrame) -> dict[str, str]:
    """``continued_from`` of every row that has one: trial id -> parent trial id."""
    if "continued_from" not in table.columns:
        return {}
    pairs = zip(table["trial_id"].astype(str), table["continued_from"], strict=True)
    return {child: parent for child, raw in pairs if (parent := trial_id_text(raw)) and parent != child}


def load_history(path: str | Path) -> pd.DataFrame | None:
    """Per-epoch metrics of every trial (long format), or None when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        history = pd.read_csv(path, dtype=ID_COLUMNS)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        warnings.warn(f"{path}: not readable; the report has no learning curves", stacklevel=2)
        return None
    if not {"trial_id", "epoch"} <= set(history.columns):
        warnings.warn(f"{path}: no trial_id/epoch columns; the report has no learning curves", stacklevel=2)
        return None
    history = history.copy()
    history["trial_id"] = history["trial_id"].astype(str)
    return history


def load_json(path: str | Path) -> dict[str, Any]:
    """A JSON object, or {} when the file is missing or unreadable (the report can go without)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        warnings.warn(f"{path}: not valid JSON, ignored", stacklevel=2)
        return {}
    return data if isinstance(data, dict) else {}


def num_classes_from_meta(meta: dict[str, Any]) -> int | None:
    """Number of classes from ``data/processed/meta.json`` (None: chance level unknown)."""
    for key in ("num_classes", "n_classes"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
            return value
    for key in ("class_names", "classes", "labels"):
        value = meta.get(key)
        if isinstance(value, (list, dict)) and len(value) >= 2:
            return len(value)
    return None
