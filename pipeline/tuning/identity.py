"""Which search a set of parameters defines: a short hash that names its tuner project folder.

Same hash -> the same search, resumed; any change to what defines the search -> a new one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Settings that change how a search runs, not what it searches.
NOT_DEFINING = ("resume", "trials_per_process", "workers", "keras_verbose", "chief_address", "chief_port", "directory",
                "time_budget")


def search_space_definition(search_space: Any) -> dict[str, Any]:
    """``{key: fixed value | {choices} | {min, max, ...}}`` in schema order."""
    return {name: getattr(search_space, name).describe() for name in type(search_space).model_fields}


def tune_settings(tune: Any) -> dict[str, Any]:
    return {k: v for k, v in tune.model_dump(mode="json").items() if k not in NOT_DEFINING}


def search_definition(params: Any, data_fingerprint: str) -> dict[str, Any]:
    definition = {
        "search_space": search_space_definition(params.search_space),
        "tune": tune_settings(params.tune),
        "seed": params.seed,
        "data_fingerprint": data_fingerprint,
    }
    # The setting, not what it resolves to on this machine: a chief without a GPU and its GPU workers
    # must name the same search. Left out at its default, so the searches from before it keep their names.
    if params.precision != "auto":
        definition["precision"] = params.precision
    return definition


def search_hash(params: Any, data_fingerprint: str, length: int = 12) -> str:
    text = json.dumps(search_definition(params, data_fingerprint), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"prefix.a.b": "1"}``; lists as JSON (MLflow params are strings)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)}
