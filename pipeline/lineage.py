"""Data lineage: the one rule for "was this trained on the data we are about to use?".

``preprocess`` writes a fingerprint of the split it made (``meta.json``); the search, every trial,
the trained model (``run.json``), its MLflow runs and its registry version record it. A model or
checkpoint trained on another split may have seen today's test images in training, so its
scores on them would be silently optimistic: the stages refuse (or retrain) instead.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PipelineError


def same_data(recorded: Any, current: Any) -> bool:
    """True unless both fingerprints are known and differ (files from before lineage say nothing)."""
    return not recorded or not current or str(recorded) == str(current)


def require_same_data(recorded: Any, current: Any, *, what: str, data: str, fix: str) -> None:
    """One line and exit 2 when ``what`` was trained on other data than ``data`` holds now."""
    if not same_data(recorded, current):
        raise PipelineError(f"{what} was trained on other data (fingerprint {str(recorded)[:12]}) than {data} "
                            f"holds now ({str(current)[:12]}): its test scores would count images it trained on; "
                            f"{fix}")
