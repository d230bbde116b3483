"""The guide's questions that have a verdict id of their own, declared once (``QUESTIONS``).

A question is a verdict id (``optimizer``, ``he_vs_glorot``, ``regularization_gap.dropout``) and
what it is about: a ``search_space`` key, and how a controlled ablation answers it (``choice``:
which value is best; ``families``: one group of values against another; ``chance``: is a value at
chance). The search's report (``pipeline.report.questions``) names a dimension's verdict after its
question where the question is the dimension itself, else ``hp.<key>`` (``verdict_id``); the
ablation (``pipeline.ablation.stats``) answers exactly the questions declared for the dimensions it
changed, one verdict each, and ``hp.<key>`` for a changed key no question is about. So no two
verdicts answer the same comparison under two names.

Plain Python (a foundation module: validation and both readers import it without pandas or TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.registry import Registry

CHOICE, FAMILIES, CHANCE = "choice", "families", "chance"
ACCURACY, GAP = "val_accuracy", "gap"  # gap: train - validation accuracy, lower is better


@dataclass(frozen=True)
class Question:
    """One verdict id. ``family(value label)`` puts a value in a group (None: in neither) for ``families``."""

    name: str
    dimension: str
    text: str
    ablation: str | None = None  # CHOICE | FAMILIES | CHANCE; None: the ablation does not answer it
    metric: str = ACCURACY
    family: Callable[[str], str | None] | None = None
    value: str | None = None  # CHANCE: the value whose runs are judged
    requires: tuple[tuple[str, str], ...] = ()  # (key, value label) the best configuration must have

    @property
    def higher_is_better(self) -> bool:
        return self.metric != GAP


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


QUESTIONS: Registry[Question] = Registry("question", "ablate.dimensions")

for _question in (
    Question("optimizer", "optimizer", "Adaptive optimizer or SGD (with momentum)?", CHOICE),
    Question("architecture", "architecture", "Which architecture family?", CHOICE),
    # the search compares every schedule; an ablation answers the guide's narrower question below
    Question("lr_schedule", "lr_schedule", "Which learning-rate schedule wins?"),
    Question("learning_rate", "learning_rate", "Which learning rates work?"),  # a nuisance in an ablation
    Question("lr_schedule.vs_constant", "lr_schedule", "A schedule or a constant rate?", FAMILIES,
             family=lambda v: "constant" if v == "constant" else "a schedule"),
    Question("zero_init", "init", "Does zero initialization stay at chance?", CHANCE, value="zeros"),
    Question("he_vs_glorot", "init", "He or Glorot initialization with ReLU?", FAMILIES,
             family=lambda v: "He" if v.startswith("he_") else "Glorot" if v.startswith("glorot_") else None,
             requires=(("activation", "relu"),)),
    Question("regularization_gap.regularizer", "regularizer", "Does a weight penalty shrink the generalization gap?",
             FAMILIES, metric=GAP, family=lambda v: "without regularizer" if v == "none" else "with regularizer"),
    Question("regularization_gap.dropout", "dropout", "Does dropout shrink the generalization gap?", FAMILIES,
             metric=GAP, family=lambda v: "without dropout" if _float(v) == 0.0 else "with dropout"),
):
    QUESTIONS.register(_question)
del _question


def verdict_id(dimension: str) -> str:
    """The verdict id of a dimension's own comparison: its question's where one is the dimension, else ``hp.<key>``."""
    return dimension if dimension in QUESTIONS and QUESTIONS.get(dimension).dimension == dimension \
        else f"hp.{dimension}"


def ablation_questions(dimension: str) -> list[Question]:
    """The questions an ablation of ``dimension`` answers, in declaration order."""
    return [q for q in map(QUESTIONS.get, QUESTIONS) if q.dimension == dimension and q.ablation is not None]


__all__ = ["CHANCE", "CHOICE", "FAMILIES", "GAP", "QUESTIONS", "Question", "ablation_questions", "verdict_id"]
