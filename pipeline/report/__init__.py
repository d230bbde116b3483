"""The report stage's library: turn the search's trials into answers to the guide's questions.

No TensorFlow and no MLflow here (``pipeline.tracking.report_artifacts`` logs the result).
``Inputs`` and ``build_report`` load lazily, so that ``pipeline.report.conditions`` stays cheap to
import for other stages (no pandas, no matplotlib). The verdict records are ``pipeline.verdicts``;
the ablation's own section is ``pipeline.ablation.section``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Inputs", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from pipeline.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'pipeline.report' has no attribute {name!r}")
