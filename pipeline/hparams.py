"""Declarative hyperparameters: fixed values, choices and ranges.

``params.yaml`` writes each search-space key as a scalar (fixed), ``{choices: [...]}``
or ``{min, max, sampling, step}``. These plain dataclasses carry no Keras/KerasTuner
import so the schema validates in a second; ``pipeline.model.space`` turns them into
KerasTuner hyperparameters.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Fixed:
    value: Any

    @property
    def searched(self) -> bool:
        return False

    def describe(self) -> Any:
        return self.value

    def allows(self, value: Any) -> bool:
        return value == self.value


@dataclass(frozen=True)
class Choice:
    choices: tuple[Any, ...]

    @property
    def searched(self) -> bool:
        return len(self.choices) > 1

    def describe(self) -> Any:
        return {"choices": list(self.choices)}

    def allows(self, value: Any) -> bool:
        return value in self.choices


@dataclass(frozen=True)
class Range:
    min: float
    max: float
    sampling: Literal["linear", "log"] = "linear"
    step: float | None = None

    @property
    def searched(self) -> bool:
        return True

    def allows(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.min <= value <= self.max

    def describe(self) -> Any:
        out: dict[str, Any] = {"min": self.min, "max": self.max, "sampling": self.sampling}
        if self.step is not None:
            out["step"] = self.step
        return out


HParam = Fixed | Choice | Range

_RANGE_KEYS = {"min", "max", "sampling", "step"}


def _coerce(value: Any, kind: Kind) -> Any:
    """Convert one scalar to ``kind`` or raise ValueError with what is allowed."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a name, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if kind == "int":
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, str):
        try:  # YAML reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise ValueError(f"expected a number, got {value!r}")


def _check_bounds(value: Any, allowed: Collection[Any] | None, ge: float | None, le: float | None,
                  gt: float | None, lt: float | None) -> None:
    if allowed is not None and value not in allowed:
        raise ValueError(f"{value!r} is not allowed; allowed: {', '.join(map(str, allowed))}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    bounds = [(ge, ">=", value >= ge if ge is not None else True),
              (gt, ">", value > gt if gt is not None else True),
              (le, "<=", value <= le if le is not None else True),
              (lt, "<", value < lt if lt is not None else True)]
    failed = [f"{op} {bound:g}" for bound, op, ok in bounds if bound is not None and not ok]
    if failed:
        allowed_text = " and ".join(f"{op} {bound:g}" for bound, op, _ in bounds if bound is not None)
        raise ValueError(f"{value!r} is out of range; allowed: {allowed_text}")


def parse_hparam(value: Any, *, kind: Kind, allowed: Collection[Any] | None = None,
                 ge: float | None = None, le: float | None = None, gt: float | None = None,
                 lt: float | None = None) -> HParam:
    """Validate one search-space entry and return its ``Fixed``/``Choice``/``Range``.

    ``allowed``: the names a string may take (a tuple, or a ``pipeline.registry.Registry``, read as it is now).
    """
    if isinstance(value, (Fixed, Choice, Range)):
        return value  # defaults, already valid
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"choices"}:
            choices = value["choices"]
            if not isinstance(choices, list) or not choices:
                raise ValueError("choices must be a non-empty list")
            coerced = tuple(_coerce(c, kind) for c in choices)
            for c in coerced:
                _check_bounds(c, allowed, ge, le, gt, lt)
            if len(set(coerced)) != len(coerced):
                raise ValueError(f"choices repeat a value: {list(coerced)}")
            return Choice(coerced)
        if keys & _RANGE_KEYS and keys <= _RANGE_KEYS:
            if kind not in ("int", "float"):
                raise ValueError("a {min, max} range needs a numeric key; use choices: [...] instead")
            if not {"min", "max"} <= keys:
                raise ValueError("a range needs both min and max")
            lo, hi = _coerce(value["min"], kind), _coerce(value["max"], kind)
            _check_bounds(lo, None, ge, le, gt, lt)
            _check_bounds(hi, None, ge, le, gt, lt)
            if not lo < hi:
                raise ValueError(f"min ({lo}) must be below max ({hi})")
            sampling = value.get("sampling", "linear")
            if sampling not in ("linear", "log"):
                raise ValueError(f"sampling {sampling!r} is not allowed; allowed: linear, log")
            if sampling == "log" and lo <= 0:
                raise ValueError("log sampling needs min > 0")
            step = value.get("step")
            if step is not None:
                step = _coerce(step, kind)
                if step <= 0:
                    raise ValueError(f"step must be > 0, got {step}")
                if sampling == "log" and step <= 1:
                    raise ValueError("with log sampling, step is a multiplier and must be > 1")
            elif kind == "int":
                step = 1
            return Range(lo, hi, sampling=sampling, step=step)
        raise ValueError(
            f"unknown keys {sorted(keys)}; allowed: a value, {{choices: [...]}} or {{min, max, sampling, step}}"
        )
    if isinstance(value, list):
        raise ValueError("a list is ambiguous; write {choices: [...]} to search over values")
    coerced = _coerce(value, kind)
    _check_bounds(coerced, allowed, ge, le, gt, lt)
    return Fixed(coerced)
