"""Each question's answer as data: kind, winner, test, p-value, n, and where the evidence comes from.

The report writes its verdicts to ``results/report/verdicts.json``. A later source of
evidence (an ablation that retrains the contested choices under controlled seeds) writes
the same records with ``evidence: "ablation"``; ``merge`` lets such a record replace the
search's record for the same ``question`` id. Plain Python only: an ablation stage imports
this without pandas or matplotlib.

A ``winner`` verdict can only be built with a p-value below ``ALPHA``: "X wins" is never
said without a test that supports it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
ALPHA = 0.05  # significance level for naming a winner
SEARCH, ABLATION = "search", "ablation"

WINNER = "winner"
NO_CLEAR_DIFFERENCE = "no_clear_difference"
NOT_ENOUGH_DATA = "not_enough_data"
NOT_SEARCHED = "not_searched"
NOT_RECORDED = "not_recorded"
NOT_TRIED = "not_tried"
NOT_APPLICABLE = "not_applicable"  # e.g. a conditional hyperparameter that never acted
AT_CHANCE = "at_chance"
ABOVE_CHANCE = "above_chance"
KINDS = (WINNER, NO_CLEAR_DIFFERENCE, NOT_ENOUGH_DATA, NOT_SEARCHED, NOT_RECORDED, NOT_TRIED, NOT_APPLICABLE,
         AT_CHANCE, ABOVE_CHANCE)


def fmt_p(p: float | None) -> str:
    """``p=0.031``; more digits where three would round across ``ALPHA`` (0.0496 is not "0.050")."""
    if p is None or math.isnan(p):
        return "p n/a"
    if p < 0.001:
        return "p<0.001"
    text = f"{p:.3f}"
    if (p < ALPHA) != (float(text) < ALPHA):
        text = f"{p:.4f}"
    return f"p={text}"


@dataclass(frozen=True)
class Verdict:
    """One answer. ``question`` is a stable id (``optimizer``, ``regularization_gap.dropout``, ``hp.blocks``)."""

    question: str
    kind: str
    winner: str | None = None
    test: str | None = None  # "Kruskal-Wallis", "Mann-Whitney U", "chance margin 0.05", ...
    p_value: float | None = None
    n: int = 0  # independent units behind the verdict (configurations for the search, runs for an ablation)
    evidence: str = SEARCH
    note: str = ""  # why there is no test, or what the comparison was restricted to
    unit: str = "configurations"
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # per compared group: n, mean_rank, ...

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"verdict {self.question}: unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.kind == WINNER:
            if not self.winner or not self.test or self.p_value is None or not self.p_value < ALPHA:
                raise ValueError(f"verdict {self.question}: a winner needs a named test with p < {ALPHA} "
                                 f"(got test={self.test!r}, p={self.p_value})")
        elif self.winner is not None:
            raise ValueError(f"verdict {self.question}: only kind {WINNER!r} names a winner")

    @property
    def label(self) -> str:
        """The short answer: the winner's name, else the kind in words."""
        return self.winner if self.kind == WINNER and self.winner else self.kind.replace("_", " ")

    @property
    def statement(self) -> str:
        """E.g. ``no clear difference (Kruskal-Wallis p=0.310, 9 configurations)``."""
        parts = []
        if self.test and self.p_value is not None:
            parts.append(f"{self.test} {fmt_p(self.p_value)}")
        elif self.test:
            parts.append(self.test)
        if self.n:
            parts.append(f"{self.n} {self.unit}")
        if self.evidence != SEARCH:
            parts.append(f"{self.evidence} evidence")
        text = ", ".join(parts)
        if self.note:
            text = f"{text}; {self.note}" if text else self.note
        return f"{self.label} ({text})" if text else self.label

    def to_dict(self) -> dict[str, Any]:
        data = _json_safe(asdict(self))
        data["statement"] = self.statement
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def _json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the file stays strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def merge(*sources: Iterable[Verdict]) -> list[Verdict]:
    """Verdicts by question id, a later source replacing an earlier one (search first, then ablation)."""
    merged: dict[str, Verdict] = {}
    for source in sources:
        for verdict in source:
            merged[verdict.question] = verdict
    return list(merged.values())


def write_verdicts(path: str | Path, verdicts: Iterable[Verdict]) -> Path:
    """``{"version": 1, "alpha": 0.05, "verdicts": [...]}`` as UTF-8 JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": FORMAT_VERSION, "alpha": ALPHA, "verdicts": [v.to_dict() for v in verdicts]}
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts of a file ``write_verdicts`` wrote; a malformed record raises ValueError naming the file."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("verdicts"), list):
        raise ValueError(f"{path}: expected an object with a 'verdicts' list")
    try:
        return [Verdict.from_dict(item) for item in data["verdicts"]]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


__all__ = ["ABLATION", "ALPHA", "KINDS", "SEARCH", "Verdict", "fmt_p", "merge", "read_verdicts", "write_verdicts"]
