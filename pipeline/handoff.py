"""The small JSON files one stage hands to the next (best_hparams.json, run.json, ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError


def read_handoff(path: Path, *, producer: str, required: str) -> dict[str, Any]:
    """A JSON object written by ``python -m pipeline <producer>`` that must hold key ``required``.

    A missing, corrupt or incomplete file is a one-line error telling which command makes it.
    """
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline {producer}` (or `dvc repro`) first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PipelineError(f"{path}: not valid JSON ({error}); run `python -m pipeline {producer}` again") from None
    if not isinstance(record, dict) or required not in record:
        raise PipelineError(f"{path}: no {required!r}; run `python -m pipeline {producer}` again")
    return record
