"""``promote`` and ``rollback``: move the registry alias ``champion``, user commands (not DVC stages).

``promote`` scores ``challenger`` and ``champion`` on the same, current test split and
moves ``champion`` only when the challenger wins by ``--min-improvement`` and reaches
``promote.min_accuracy``; the old champion keeps ``previous-champion``. The decision
and both scores are written as tags on the challenger's version.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.errors import DataError, PipelineError
from pipeline.lineage import require_same_data, same_data

# A tie is no win: floating-point noise must not flip the champion back and forth.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(challenger_accuracy: float, champion_accuracy: float | None, min_improvement: float,
           min_accuracy: float) -> Decision:
    """Whether the challenger takes over; pure, so the rule is tested without a registry."""
    if challenger_accuracy + _EPSILON < min_accuracy:
        return Decision(False, f"challenger accuracy {challenger_accuracy:.4f} is below "
                               f"promote.min_accuracy {min_accuracy:.4f}")
    if champion_accuracy is None:
        return Decision(True, "first promotion: there is no champion yet")
    gain = challenger_accuracy - champion_accuracy
    if gain <= _EPSILON or gain + _EPSILON < min_improvement:
        return Decision(False, f"challenger does not beat the champion by the required {min_improvement:.4f} "
                               f"(gain {gain:+.4f})")
    return Decision(True, f"challenger beats the champion by {gain:+.4f} (required {min_improvement:.4f})")


def _check_shape(tracker: Any, label: str, model: Any, expected: tuple[int, ...]) -> None:
    shape = tracker.model_input_shape(model)
    if shape is None:
        raise DataError(f"{label} {model}: no tensor input signature; register it again with `python -m pipeline "
                        "register`")
    if shape != expected:
        raise DataError(f"{label} {model} expects input {shape}, but the current data ({paths.PROCESSED_DIR}) "
                        f"has shape {expected}; it cannot be compared on this test split")


def _check_lineage(tracker: Any, label: str, model: Any, current: str | None) -> None:
    """The challenger must have been trained on this split; a champion from an older one is only flagged
    (its score here may be flattering, which can only keep it, never promote a challenger wrongly)."""
    from pipeline.tracking.api import CHALLENGER

    trained_on = (tracker.model_data(model) or {}).get("fingerprint")
    if label != CHALLENGER:
        if not same_data(trained_on, current):
            print(f"warning: {label} {model} was trained on other data (fingerprint {str(trained_on)[:12]}); "
                  "its score on this test split may count images it trained on", file=sys.stderr)
        return
    require_same_data(trained_on, current, what=f"{label} {model}", data=str(paths.PROCESSED_DIR),
                      fix="register a model trained on this data (`dvc repro`)")


def _test_inputs(tracker: Any, label: str, model: Any, x_test: np.ndarray, current: dict[str, Any]) -> np.ndarray:
    """The test split as this version takes it: raw pixels, or normalized with its own statistics.

    Versions registered before the models became self-contained take normalized arrays; their
    logged data description says with which statistics, so they are still compared fairly.
    """
    from pipeline.evaluation.inputs import inputs_for

    own = (tracker.model_data(model) or {}).get("normalization") or {}
    return inputs_for(tracker.model_input_kind(model), x_test, current, own, label=f"{label} {model}")


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.tracking.api import CHALLENGER, CHAMPION, open_tracker

    name = params.register.model_name
    min_improvement = params.promote.min_improvement if args.min_improvement is None else args.min_improvement
    if not 0.0 <= min_improvement <= 1.0:
        raise PipelineError(f"--min-improvement {min_improvement:g}: allowed: 0 to 1 (test-accuracy difference)")
    tracker = open_tracker(params)
    challenger = tracker.version_for_alias(name, CHALLENGER)
    if challenger is None:
        raise PipelineError(f"registered model {name!r} has no version with alias {CHALLENGER!r}; "
                            "run `python -m pipeline register` (or `dvc repro`) first")
    champion = tracker.version_for_alias(name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        print(f"{name} version {challenger.version} is already {CHAMPION}; nothing to promote")
        return 0

    contenders = {label: version for label, version in ((CHALLENGER, challenger), (CHAMPION, champion))
                  if version is not None}
    meta, scores, samples = score_on_test(tracker, name, contenders)
    if champion is None:
        print(f"no {CHAMPION} yet: this is the first promotion of {name}")
    decision = decide(scores[CHALLENGER], scores.get(CHAMPION), min_improvement,
                      params.promote.min_accuracy)
    verdict = "promote" if decision.promote else "keep the champion"
    if args.dry_run:
        print(f"dry run: would {verdict}: {decision.reason}; no alias moved, no tag written")
        return 0

    tags = {"promote.decision": "promoted" if decision.promote else "refused",
            "promote.reason": decision.reason,
            "promote.challenger_accuracy": f"{scores[CHALLENGER]:.6f}",
            "promote.champion_accuracy": f"{scores[CHAMPION]:.6f}" if champion else "none",
            "promote.champion_version": champion.version if champion else "none",
            "promote.min_improvement": f"{min_improvement:g}",
            "promote.min_accuracy": f"{params.promote.min_accuracy:g}",
            "promote.test_samples": str(samples),
            "promote.data_fingerprint": str(meta.get("fingerprint")),
            "promote.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tracker.set_version_tags(challenger, tags)
    move_aliases(tracker, name, decision, challenger, champion)
    return 0


def score_on_test(tracker: Any, name: str, contenders: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], int]:
    """Each contender's accuracy on the current test split: (data metadata, label -> accuracy, samples)."""
    from pipeline.data.store import load_meta, load_split

    meta = load_meta(paths.PROCESSED_DIR)
    expected = tuple(int(d) for d in meta["input_shape"])
    x_test, y_test = load_split(paths.PROCESSED_DIR, "test")
    for label, version in contenders.items():
        _check_shape(tracker, label, version, expected)
        _check_lineage(tracker, label, version, meta.get("fingerprint"))

    from pipeline.evaluation.metrics import accuracy, predict_proba
    from pipeline.evaluation.model_io import register_custom_objects

    register_custom_objects()
    # Both inputs first: a champion that cannot be fed correctly is refused before any score is printed.
    inputs = {label: _test_inputs(tracker, label, version, x_test, meta["normalization"])
              for label, version in contenders.items()}
    scores = {}
    for label, version in contenders.items():
        scores[label] = accuracy(y_test, predict_proba(tracker.load_model(version), inputs[label]))
        print(f"{label:<10} {name} version {version.version}: test accuracy {scores[label]:.4f} "
              f"({len(y_test)} samples)")
    return meta, scores, len(y_test)


def move_aliases(tracker: Any, name: str, decision: Decision, challenger: Any, champion: Any) -> None:
    """``champion`` to the challenger (the old one keeps ``previous-champion``), or nothing when refused."""
    from pipeline.tracking.api import CHAMPION, PREVIOUS_CHAMPION

    if not decision.promote:
        kept = f"{CHAMPION} stays {name} version {champion.version}" if champion else \
            f"{name} still has no {CHAMPION}"
        print(f"refused: {decision.reason}; {kept}")
        return
    if champion is not None:
        tracker.set_alias(champion, PREVIOUS_CHAMPION)
    tracker.set_alias(challenger, CHAMPION)
    moved = f"from version {champion.version} " if champion else ""
    print(f"promoted: {decision.reason}; {CHAMPION} moved {moved}to {name} version {challenger.version}"
          + (f", {PREVIOUS_CHAMPION} -> version {champion.version}" if champion else ""))


def rollback(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    """``champion`` back to ``previous-champion``; the two swap, so a second rollback undoes it."""
    from pipeline.tracking.api import CHAMPION, PREVIOUS_CHAMPION, open_tracker

    name = params.register.model_name
    tracker = open_tracker(params)
    previous = tracker.version_for_alias(name, PREVIOUS_CHAMPION)
    if previous is None:
        raise PipelineError(f"registered model {name!r} has no alias {PREVIOUS_CHAMPION!r}; "
                            "nothing to roll back to (it is set when `promote` replaces a champion)")
    current = tracker.version_for_alias(name, CHAMPION)
    tracker.set_alias(previous, CHAMPION)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    tracker.set_version_tags(previous, {"rollback.restored_at": stamp})
    if current is not None and current.version != previous.version:
        tracker.set_alias(current, PREVIOUS_CHAMPION)
        tracker.set_version_tags(current, {"rollback.demoted_at": stamp})
        print(f"rolled back: {CHAMPION} {name} version {current.version} -> version {previous.version}; "
              f"{PREVIOUS_CHAMPION} now version {current.version} (rollback again to undo)")
    else:
        print(f"rolled back: {CHAMPION} -> {name} version {previous.version}")
    return 0
