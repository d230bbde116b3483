"""Which hyperparameters act only under some choice of another: the one activity map.

The search space registers every key in every trial (``pipeline.model.space``), so a
trial of ``optimizer: adam`` still carries a sampled ``weight_decay`` that the model never
reads. Statistics over such a column measure noise; analyses use ``is_active`` to keep
only the trials where the value reached the model. The map mirrors the model code:
``pipeline.model.optimizers`` (momentum, weight_decay), ``regularizers`` (reg_strength),
``initializers`` (init_stddev); each learning-rate schedule's knobs come from their declaration
in ``pipeline.registry.SCHEDULES``. Plain Python only, so that any module (report, ablation,
tuning) can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.registry import knob_users

# hyperparameter -> (the hyperparameter it depends on, the values of that one under which it acts)
ACTIVE_WHEN: dict[str, tuple[str, frozenset[str]]] = {
    "momentum": ("optimizer", frozenset({"momentum", "nesterov"})),
    "weight_decay": ("optimizer", frozenset({"adamw"})),
    "reg_strength": ("regularizer", frozenset({"l1", "l2", "l1_l2"})),
    "init_stddev": ("init", frozenset({"random_normal", "random_uniform"})),
    # a schedule's knob acts under the schedules that declare it
    **{knob: ("lr_schedule", schedules) for knob, schedules in knob_users().items()},
}


def condition(name: str) -> tuple[str, frozenset[str]] | None:
    """``(parent, values)`` under which ``name`` acts, or None when it always acts."""
    return ACTIVE_WHEN.get(name)


def is_active(name: str, values: Mapping[str, Any]) -> bool:
    """Whether ``name`` reaches the model for one configuration ``values`` (a missing parent counts as active)."""
    rule = ACTIVE_WHEN.get(name)
    if rule is None:
        return True
    parent, allowed = rule
    if parent not in values:
        return True  # nothing to decide on: do not silently drop the value
    return str(values[parent]).strip() in allowed


def describe_condition(name: str) -> str:
    """Human wording of the rule, e.g. ``optimizer is adamw`` or ``lr_schedule is one of cosine, ...``."""
    rule = ACTIVE_WHEN.get(name)
    if rule is None:
        return "always"
    parent, allowed = rule
    listed = sorted(allowed)
    return f"{parent} is {listed[0]}" if len(listed) == 1 else f"{parent} is one of {', '.join(listed)}"


__all__ = ["ACTIVE_WHEN", "condition", "describe_condition", "is_active"]
