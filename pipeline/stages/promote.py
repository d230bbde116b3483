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


def _check_shape(label: str, uri: str, expected: tuple[int, ...]) -> None:
    from pipeline.tracking import registry

    shape = registry.input_shape(uri)
    if shape is None:
        raise DataError(f"{label} {uri}: no tensor input signature; register it again with `python -m pipeline "
                        "register`")
    if shape != expected:
        raise DataError(f"{label} {uri} expects input {shape}, but the current data ({paths.PROCESSED_DIR}) "
                        f"has shape {expected}; it cannot be compared on this test split")


def _check_lineage(label: str, uri: str, current: str | None) -> None:
    """The challenger must have been trained on this split; a champion from an older one is only flagged
    (its score here may be flattering, which can only keep it, never promote a challenger wrongly)."""
    from pipeline.tracking import registry

    trained_on = (registry.data_metadata(uri) or {}).get("fingerprint")
    if label != registry.CHALLENGER:
        if not same_data(trained_on, current):
            print(f"warning: {label} {uri} was trained on other data (fingerprint {str(trained_on)[:12]}); "
                  "its score on this test split may count images it trained on", file=sys.stderr)
        return
    require_same_data(trained_on, current, what=f"{label} {uri}", data=str(paths.PROCESSED_DIR),
                      fix="register a model trained on this data (`dvc repro`)")


def _test_inputs(label: str, uri: str, x_test: np.ndarray, current: dict[str, Any]) -> np.ndarray:
    """The test split as this version takes it: raw pixels, or normalized with its own statistics.

    Versions registered before the models became self-contained take normalized arrays; their
    logged data description says with which statistics, so they are still compared fairly.
    """
    from pipeline.evaluation.inputs import inputs_for
    from pipeline.tracking import registry

    own = (registry.data_metadata(uri) or {}).get("normalization") or {}
    return inputs_for(registry.input_kind(uri), x_test, current, own, label=f"{label} {uri}")


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.tracking import registry
    from pipeline.tracking.store import configure

    name = params.register.model_name
    min_improvement = params.promote.min_improvement if args.min_improvement is None else args.min_improvement
    if not 0.0 <= min_improvement <= 1.0:
        raise PipelineError(f"--min-improvement {min_improvement:g}: allowed: 0 to 1 (test-accuracy difference)")
    configure(params)
    challenger = registry.version_for_alias(name, registry.CHALLENGER)
    if challenger is None:
        raise PipelineError(f"registered model {name!r} has no version with alias {registry.CHALLENGER!r}; "
                            "run `python -m pipeline register` (or `dvc repro`) first")
    champion = registry.version_for_alias(name, registry.CHAMPION)
    if champion is not None and champion.version == challenger.version:
        print(f"{name} version {challenger.version} is already {registry.CHAMPION}; nothing to promote")
        return 0

    contenders = {label: version for label, version in ((registry.CHALLENGER, challenger),
                                                        (registry.CHAMPION, champion)) if version is not None}
    meta, scores, samples = score_on_test(name, contenders)
    if champion is None:
        print(f"no {registry.CHAMPION} yet: this is the first promotion of {name}")
    decision = decide(scores[registry.CHALLENGER], scores.get(registry.CHAMPION), min_improvement,
                      params.promote.min_accuracy)
    verdict = "promote" if decision.promote else "keep the champion"
    if args.dry_run:
        print(f"dry run: would {verdict}: {decision.reason}; no alias moved, no tag written")
        return 0

    tags = {"promote.decision": "promoted" if decision.promote else "refused",
            "promote.reason": decision.reason,
            "promote.challenger_accuracy": f"{scores[registry.CHALLENGER]:.6f}",
            "promote.champion_accuracy": f"{scores[registry.CHAMPION]:.6f}" if champion else "none",
            "promote.champion_version": champion.version if champion else "none",
            "promote.min_improvement": f"{min_improvement:g}",
            "promote.min_accuracy": f"{params.promote.min_accuracy:g}",
            "promote.test_samples": str(samples),
            "promote.data_fingerprint": str(meta.get("fingerprint")),
            "promote.time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    registry.set_version_tags(name, challenger.version, tags)
    move_aliases(name, decision, challenger, champion)
    return 0


def score_on_test(name: str, contenders: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], int]:
    """Each contender's accuracy on the current test split: (data metadata, label -> accuracy, samples)."""
    from pipeline.data.store import load_meta, load_split
    from pipeline.tracking import registry

    meta = load_meta(paths.PROCESSED_DIR)
    expected = tuple(int(d) for d in meta["input_shape"])
    x_test, y_test = load_split(paths.PROCESSED_DIR, "test")
    for label, version in contenders.items():
        _check_shape(label, version.uri, expected)
        _check_lineage(label, version.uri, meta.get("fingerprint"))

    from pipeline.evaluation.metrics import accuracy, predict_proba
    from pipeline.evaluation.model_io import register_custom_objects

    register_custom_objects()
    # Both inputs first: a champion that cannot be fed correctly is refused before any score is printed.
    inputs = {label: _test_inputs(label, version.uri, x_test, meta["normalization"])
              for label, version in contenders.items()}
    scores = {}
    for label, version in contenders.items():
        scores[label] = accuracy(y_test, predict_proba(registry.load_keras(version.uri), inputs[label]))
        print(f"{label:<10} {name} version {version.version}: test accuracy {scores[label]:.4f} "
              f"({len(y_test)} samples)")
    return meta, scores, len(y_test)


def move_aliases(name: str, decision: Decision, challenger: Any, champion: Any) -> None:
    """``champion`` to the challenger (the old one keeps ``previous-champion``), or nothing when refused."""
    from pipeline.tracking import registry

    if not decision.promote:
        kept = f"{registry.CHAMPION} stays {name} version {champion.version}" if champion else \
            f"{name} still has no {registry.CHAMPION}"
        print(f"refused: {decision.reason}; {kept}")
        return
    if champion is not None:
        registry.set_alias(name, registry.PREVIOUS_CHAMPION, champion.version)
    registry.set_alias(name, registry.CHAMPION, challenger.version)
    moved = f"from version {champion.version} " if champion else ""
    print(f"promoted: {decision.reason}; {registry.CHAMPION} moved {moved}to {name} version {challenger.version}"
          + (f", {registry.PREVIOUS_CHAMPION} -> version {champion.version}" if champion else ""))


def rollback(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    """``champion`` back to ``previous-champion``; the two swap, so a second rollback undoes it."""
    from pipeline.tracking import registry
    from pipeline.tracking.store import configure

    name = params.register.model_name
    configure(params)
    previous = registry.version_for_alias(name, registry.PREVIOUS_CHAMPION)
    if previous is None:
        raise PipelineError(f"registered model {name!r} has no alias {registry.PREVIOUS_CHAMPION!r}; "
                            "nothing to roll back to (it is set when `promote` replaces a champion)")
    current = registry.version_for_alias(name, registry.CHAMPION)
    registry.set_alias(name, registry.CHAMPION, previous.version)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    registry.set_version_tags(name, previous.version, {"rollback.restored_at": stamp})
    if current is not None and current.version != previous.version:
        registry.set_alias(name, registry.PREVIOUS_CHAMPION, current.version)
        registry.set_version_tags(name, current.version, {"rollback.demoted_at": stamp})
        print(f"rolled back: {registry.CHAMPION} {name} version {current.version} -> version {previous.version}; "
              f"{registry.PREVIOUS_CHAMPION} now version {current.version} (rollback again to undo)")
    else:
        print(f"rolled back: {registry.CHAMPION} -> {name} version {previous.version}")
    return 0
