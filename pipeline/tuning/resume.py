"""A search resumes where it stopped whatever the number of processes that ran it and that resume it.

The one-process tuner (KerasTuner's tuner id ``tuner0``) and the chief of a distributed search
(``chief``) keep the search in the same files: ``oracle.json`` and a ``trial_*/trial.json`` per
trial in the project folder. But KerasTuner reloads them only when the tuner file of *its own* id
(``<tuner id>.json``) exists, and otherwise starts a fresh oracle that overwrites ``oracle.json``:
a ``--workers 2`` search resumed by one process (whose ``tuner0`` worker had not finished a
trial) or a one-process search resumed by a chief started over at trial 0000 and ran and logged
finished trials again. ``share_tuner_state`` gives the tuner its file when the search exists.

``drop_finished_retries`` covers KerasTuner's own resume gap: ``Oracle.end_trial`` saves the
oracle before it drops the trial from the running ones, so a kill in between leaves a finished
trial in ``ongoing_trials``, which a reload sends for a retry. ``forget_unrecorded_trials`` covers
the other end: ``Oracle.create_trial`` writes the new trial's file before it saves the oracle, so a
kill in between leaves a RUNNING trial the oracle never recorded (no bracket, not in
``start_order``, never retried): it stayed RUNNING forever.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic

ORACLE_FILE = "oracle.json"  # KerasTuner's Oracle._get_oracle_fname
DEFAULT_TUNER_ID = "tuner0"  # KerasTuner's BaseTuner: the id when KERASTUNER_TUNER_ID is not set
# Tuner files the pipeline's processes write: the chief's and the workers' (tuner0, tuner1, ...).
TUNER_FILE_PATTERNS = ("chief*.json", "tuner*.json")


def tuner_id() -> str:
    """This process's KerasTuner tuner id, as ``BaseTuner.__init__`` reads it."""
    return os.environ.get("KERASTUNER_TUNER_ID", DEFAULT_TUNER_ID)


def share_tuner_state(project_dir: str | Path, own_id: str | None = None) -> Path | None:
    """Let the tuner ``own_id`` (default: this process's) reload the search in ``project_dir`` that
    other tuner ids ran; the file written, or None (no search there yet, or the tuner has its file)."""
    project_dir = Path(project_dir)
    own = project_dir / f"{own_id or tuner_id()}.json"
    if own.exists() or not (project_dir / ORACLE_FILE).is_file():
        return None
    siblings = sorted(p for pattern in TUNER_FILE_PATTERNS for p in project_dir.glob(pattern) if p != own)
    # A tuner file holds the tuner's own state, the same for every id of one search (KerasTuner's
    # tuners keep none: ``{}``); the search itself is in oracle.json and the trial files.
    write_text_atomic(own, siblings[0].read_text(encoding="utf-8") if siblings else "{}")
    return own


def forget_unrecorded_trials(oracle: Any) -> list[str]:
    """Drop, from a reloaded oracle and from disk, the trials its saved state never recorded; their ids.

    Such a trial was killed as it was being handed out, before the oracle saved it: as far as the
    search goes it never started, so the next trial the oracle creates takes its id (KerasTuner
    numbers trials by count) and its folder is removed so that no record of the killed one is mixed
    into the new one. A distributed worker's oracle client keeps no state: nothing to do.
    """
    trials, started = getattr(oracle, "trials", None), getattr(oracle, "start_order", None)
    if not isinstance(trials, dict) or not isinstance(started, list):
        return []
    recorded = set(started)
    orphans = sorted(t for t, trial in trials.items() if t not in recorded and trial.status == "RUNNING")
    for trial_id in orphans:
        del trials[trial_id]
        shutil.rmtree(oracle._get_trial_dir(trial_id), ignore_errors=True)
    return orphans


def drop_finished_retries(oracle: Any) -> list[str]:
    """Take the trials that had finished out of a reloaded oracle's retry queue; their ids.

    A distributed worker's oracle client has no queue (the chief's oracle holds it): nothing to do.
    """
    queue = getattr(oracle, "_retry_queue", None)  # KerasTuner's Oracle: trial ids to hand out again
    trials = getattr(oracle, "trials", None)
    if not queue or not isinstance(trials, dict):
        return []
    finished = [t for t in queue if t in trials and trials[t].status == "COMPLETED"]
    if finished:
        oracle._retry_queue = [t for t in queue if t not in finished]
    return finished
