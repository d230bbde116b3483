"""What to feed a model from ``data/processed``: raw pixels or normalized arrays.

A self-contained model (``pipeline.model.export``) normalizes inside, so it is scored on the
processed arrays mapped back to the source's pixel scale, exactly what users send it. A model
from before that change takes normalized arrays, normalized with *its own* statistics, which
may differ from the current data's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.data.normalize import apply_normalization, raw_from_processed
from pipeline.errors import DataError
from pipeline.model.export import NORMALIZED_INPUT, RAW_INPUT


def inputs_for(kind: str, x_processed: np.ndarray, current: Mapping[str, Any],
               own: Mapping[str, Any] | None = None, label: str = "model") -> np.ndarray:
    """``x_processed`` (normalized with ``current``) as the model of input ``kind`` takes it.

    ``own``: the normalization the model was trained with, for a ``normalized`` model; None
    means "the current one" (a model trained on this very data). A ``normalized`` model whose
    statistics are unknown cannot be fed correctly: that is an error, not a silent guess.
    """
    if kind == RAW_INPUT:
        return raw_from_processed(x_processed, dict(current))
    if kind != NORMALIZED_INPUT:
        raise DataError(f"{label}: unknown input kind {kind!r} (expected {RAW_INPUT} or {NORMALIZED_INPUT})")
    if own is None or dict(own) == dict(current):
        return x_processed
    if "method" not in own:
        raise DataError(f"{label} takes normalized input but records no usable normalization statistics; "
                        "it cannot be scored on the current data (register it again from a current training)")
    return apply_normalization(raw_from_processed(x_processed, dict(current)), dict(own))
