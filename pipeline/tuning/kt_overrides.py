"""Two KerasTuner behaviours the pipeline changes, installed once by ``install()`` before a tuner is built.

1. A failed trial's traceback is not printed: KerasTuner prints it (``config.DEBUG``, True by
   default) although the search handles the failure; the trial's run and record keep its last
   line, and ``tune.keras_verbose: true`` brings the full traceback back.
2. KerasTuner's state files (oracle.json, trial.json, tuner0.json) are written whole and read
   with a clear error.

KerasTuner writes them in place (``keras_tuner.src.utils.save_json``): a kill or a full disk in
the middle of a write leaves a torn JSON file, and the next resume fails on a ``JSONDecodeError``
traceback. Its only writer and reader of these files are that function and ``load_json``
(``Stateful.save`` / ``reload`` look them up on the module at call time), so replacing the two
here covers the oracle, every trial and the tuner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

_INSTALLED = False
_ORIGINALS: dict[str, Any] = {}  # KerasTuner's own functions, kept for remote paths and reading


class TornStateError(PipelineError):
    """A tuner state file that is not valid JSON: a write was cut off."""


def save_json(path: str, obj: Any) -> str:
    """KerasTuner's ``save_json``, atomic for local paths (the previous file stays until the new one is whole)."""
    from pipeline.atomic import write_text_atomic

    text = json.dumps(obj)
    if "://" in str(path):  # a remote file system (gs://...): KerasTuner's own writer
        return _ORIGINALS["save_json"](path, obj)
    write_text_atomic(path, text)
    return text


def load_json(path: str) -> Any:
    """KerasTuner's ``load_json``; a torn file is one line naming it and what to do."""
    try:
        return _ORIGINALS["load_json"](path)
    except json.JSONDecodeError:
        folder = Path(path).parent
        raise TornStateError(
            f"{path}: the search's state file is cut off (not valid JSON: a write was interrupted). "
            f"Remove {folder if Path(path).name == 'trial.json' else path} to continue without it, "
            "or set tune.resume: false to start the search over") from None




def install(*, tracebacks: bool = False) -> None:
    """Route KerasTuner's state writes and reads through this module; print failed trials' tracebacks
    only when ``tracebacks`` (idempotent)."""
    global _INSTALLED
    from keras_tuner.src import config, utils

    config.DEBUG = tracebacks
    if _INSTALLED:
        return

    _ORIGINALS.update(save_json=utils.save_json, load_json=utils.load_json)
    utils.save_json, utils.load_json = save_json, load_json
    _INSTALLED = True
