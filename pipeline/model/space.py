"""The declarative search space (``params.yaml: search_space``) as KerasTuner hyperparameters.

Every key is registered in every trial, under its params.yaml name and outside any
conditional scope, so that all trials carry the same columns in MLflow. Keys that only
matter for some choices (``momentum`` without SGD, ``weight_decay`` without AdamW) are
still sampled; the model simply ignores them.
"""

from __future__ import annotations

from typing import Any

import keras_tuner

from pipeline.config import SearchSpaceConfig
from pipeline.hparams import Choice, Fixed, HParam, Range


def _is_int_range(spec: Range) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (spec.min, spec.max)) and (
        spec.step is None or float(spec.step).is_integer()
    )


def register(hp: keras_tuner.HyperParameters, name: str, spec: HParam) -> Any:
    """Register one ``Fixed``/``Choice``/``Range`` in ``hp`` and return its current value."""
    if isinstance(spec, Fixed):
        return hp.Fixed(name, spec.value)
    if isinstance(spec, Choice):
        if len(spec.choices) == 1:
            return hp.Fixed(name, spec.choices[0])
        if all(isinstance(c, bool) for c in spec.choices):  # hp.Choice would turn them into 0/1
            return hp.Boolean(name, default=spec.choices[0])
        return hp.Choice(name, list(spec.choices))
    if isinstance(spec, Range):
        if _is_int_range(spec):
            step = int(spec.step) if spec.step is not None else 1
            return hp.Int(name, int(spec.min), int(spec.max), step=step, sampling=spec.sampling)
        return hp.Float(name, float(spec.min), float(spec.max), step=spec.step, sampling=spec.sampling)
    raise TypeError(f"search_space.{name}: unsupported hyperparameter {spec!r}")


def space_items(space: SearchSpaceConfig) -> list[tuple[str, HParam]]:
    """``(name, spec)`` for every key of the search space, in params.yaml schema order."""
    return [(name, getattr(space, name)) for name in type(space).model_fields]


def declare_hyperparameters(space: SearchSpaceConfig, hp: keras_tuner.HyperParameters) -> dict[str, Any]:
    """Register every search-space key in ``hp``; return ``{name: value}`` for this trial."""
    return {name: register(hp, name, spec) for name, spec in space_items(space)}


def _coerce_like(spec: HParam, value: Any) -> Any:
    """JSON round trips turn 1.0 into 1 and leave bools alone; give back the space's type."""
    if isinstance(spec, Range):
        return int(value) if _is_int_range(spec) else float(value)
    reference = spec.value if isinstance(spec, Fixed) else spec.choices[0]
    if isinstance(reference, bool):
        return bool(value)
    if isinstance(reference, int):
        return int(value)
    if isinstance(reference, float):
        return float(value)
    return value


def hyperparameters_from_values(space: SearchSpaceConfig, values: dict[str, Any]) -> keras_tuner.HyperParameters:
    """A ``HyperParameters`` holding ``values`` (e.g. a best trial's), for building outside a tuner.

    Keys outside the search space (``tuner/epochs``, ...) are ignored; a searched key that
    is missing raises, a fixed one that is missing takes the space's value.
    """
    hp = keras_tuner.HyperParameters()
    declare_hyperparameters(space, hp)
    missing = [name for name, spec in space_items(space) if name not in values and spec.searched]
    if missing:
        raise ValueError(f"hyperparameter values lack searched keys: {', '.join(missing)}")
    for name, spec in space_items(space):
        if name in values:
            hp.values[name] = _coerce_like(spec, values[name])
    return hp

