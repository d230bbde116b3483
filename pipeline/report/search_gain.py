"""The report's "what the search bought" section: the search's best configuration against the initial point.

The figures come from results/tune/metrics.json (``pipeline.tuning.gain`` computed them once,
when the search ended); the final model's per-seed validation scores from results/train/run.json
give the seed-to-seed spread a gain has to clear to mean anything. Either file missing: the
section says less, or nothing.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from pipeline.report.render import Document
from pipeline.time_budget import clock

CONFIDENCE = 0.95


def write_section(doc: Document, tune_metrics: Path | None, train_run: Path | None) -> dict[str, Any] | None:
    """Write the section; return its figures (None: no search gain recorded, no section)."""
    metrics = _load(tune_metrics)
    if not metrics or "search_gain_epochs" not in metrics:
        return None
    doc.heading(2, "What the search bought")
    if metrics.get("stopped_by_budget"):
        doc.paragraph(_budget_sentence(metrics))
    initial, searched = metrics.get("best_initial_score"), metrics.get("best_searched_score")
    gain, epochs = metrics.get("search_gain"), metrics.get("search_gain_epochs")
    if initial is None:
        doc.paragraph("No initial point (tune.initial_points is empty, or the tuner ignores it): every "
                      "configuration came from the search, so there is no recipe to compare with.")
        return {"search_gain": None}
    rows = [[f"best initial point (trial {metrics.get('best_initial_trial')})", f"{initial:.4f}"]]
    if searched is not None:
        rows.append([f"best searched configuration (trial {metrics.get('best_searched_trial')})", f"{searched:.4f}"])
    doc.table([f"validation score at {epochs} epochs (equal budgets)", "score"], rows)
    searched_best = metrics.get("best_trial_from") == "search"
    if gain is None:
        doc.paragraph(f"No searched configuration was trained for the full {epochs} epochs, so none can be set "
                      "against the initial point at equal epochs: the recipe was not challenged"
                      + ("." if not searched_best else f" there. {_searched_best_sentence(metrics, epochs)}"))
    elif gain > 0:
        doc.paragraph(f"The search found a configuration (trial {metrics.get('best_searched_trial')}) better than "
                      f"the initial point by {gain:+.4f} on validation, both after {epochs} epochs.")
    elif searched_best:
        doc.paragraph(f"At equal epochs the recipe was not beaten: the best searched configuration is {gain:+.4f} "
                      f"against the initial point on validation, both after {epochs} epochs. "
                      + _searched_best_sentence(metrics, epochs))
    else:
        doc.paragraph(f"The recipe was not beaten: the best searched configuration is {gain:+.4f} against the "
                      f"initial point on validation, both after {epochs} epochs; the final model owes its "
                      "configuration to the recipe.")
    run = _load(train_run)
    spread = seed_spread(run)
    if spread is not None:
        doc.paragraph(_spread_sentence(spread, gain))
    hedge = hedge_comparison(run)
    if hedge is not None:
        doc.paragraph(_hedge_sentence(hedge))
    return {"search_gain": gain, "seed_spread": spread, "hedge": hedge}


def _budget_sentence(metrics: dict[str, Any]) -> str:
    """The search did not end on its own: tune.time_budget stopped it (what follows is what it reached)."""
    budget, spent = metrics.get("time_budget_s"), metrics.get("time_spent_s")
    of = f" ({clock(budget)})" if budget else ""
    after = f" after {clock(spent)}" if spent is not None else ""
    return (f"tune.time_budget{of} stopped the search{after}, with {metrics.get('trials')} trial(s) run: the "
            "figures below are what those trials reached, not a finished search. Rerun tune with "
            "tune.resume: true to continue it.")


def _searched_best_sentence(metrics: dict[str, Any], epochs: Any) -> str:
    """The best trial is a searched one (under data fidelity the initial point stops one rung down)."""
    trained = metrics.get("best_trial_epochs")
    longer = isinstance(trained, int) and isinstance(epochs, int) and trained > epochs
    return (f"But the best trial overall, {metrics.get('best_trial')}"
            + (f" ({trained} epochs)" if trained is not None else "")
            + ", is a searched configuration: the final model's configuration comes from the search"
            + (f"; the recipe was not trained beyond {epochs} epochs, so how it would compare there is not "
               "measured." if longer else "."))


def seed_spread(run: dict[str, Any] | None) -> dict[str, float] | None:
    """Mean, standard deviation and a t-interval of the final model's members' validation scores
    (the seeds of the retrained configuration); None with fewer than two members."""
    if not run:
        return None
    members = [m for m in run.get("members") or [] if m.get("trial_id") == run.get("trial_id")]
    scores = [float(m["retrained_score"]) for m in members if _finite(m.get("retrained_score"))]
    if len(scores) < 2:
        return None
    from scipy.stats import t

    mean, sd = statistics.fmean(scores), statistics.stdev(scores)
    half = float(t.ppf(0.5 + CONFIDENCE / 2, len(scores) - 1)) * sd / math.sqrt(len(scores))
    return {"n": len(scores), "mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "min": min(scores), "max": max(scores)}


def hedge_comparison(run: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where train hedged (``train.hedge_initial_point``): the retrained validation scores of the search's
    best configuration and of the initial point it averaged with, seed by seed (None: no hedge)."""
    run = run or {}
    members = [m for m in run.get("members") or [] if _finite(m.get("retrained_score"))]
    hedged = [m for m in members if m.get("hedge")]
    best = [m for m in members if m.get("trial_id") == run.get("trial_id") and not m.get("hedge")]
    if not hedged or not best:
        return None
    searched = [float(m["retrained_score"]) for m in best]
    initial = [float(m["retrained_score"]) for m in hedged]
    decision = run.get("hedge") or {}
    return {"searched_trial": best[0]["trial_id"], "initial_trial": hedged[0]["trial_id"],
            "searched_mean": statistics.fmean(searched), "initial_mean": statistics.fmean(initial),
            "searched_n": len(searched), "initial_n": len(initial), "kept": decision.get("kept", "both"),
            "both_score": decision.get("both_score"), "initial_point_score": decision.get("initial_point_score")}


def _hedge_sentence(hedge: dict[str, Any]) -> str:
    text = (f"On the search's validation images the best searched configuration (trial {hedge['searched_trial']}) "
            f"did not lead the initial point (trial {hedge['initial_trial']}) by more than their noise, so train "
            f"retrained both (train.hedge_initial_point). Retrained for the final budget they reach validation "
            f"{hedge['searched_mean']:.4f} (mean of {hedge['searched_n']} seeds) and {hedge['initial_mean']:.4f} "
            f"(mean of {hedge['initial_n']}): a difference of {hedge['searched_mean'] - hedge['initial_mean']:+.4f}, "
            "measured on the images that chose the searched configuration, so it leans in the search's favour.")
    if hedge["both_score"] is None:
        return text + " The final model averages both."
    if hedge["kept"] == "both":
        return (text + f" Averaged, all their models reach validation {hedge['both_score']:.4f} against "
                f"{hedge['initial_point_score']:.4f} for the initial point's alone: the final model averages both.")
    return (text + f" Averaged, all their models reach validation {hedge['both_score']:.4f}, no better than the "
            f"initial point's alone ({hedge['initial_point_score']:.4f}): the final model is the initial point's "
            "models alone, the recipe retrained; this time the search bought nothing the recipe did not have.")


def _spread_sentence(spread: dict[str, float], gain: float | None) -> str:
    text = (f"The final model's {spread['n']} seeds of that configuration reach validation "
            f"{spread['min']:.4f}-{spread['max']:.4f} (mean {spread['mean']:.4f}, {CONFIDENCE:.0%} t-interval "
            f"{spread['low']:.4f}-{spread['high']:.4f}, seed-to-seed standard deviation {spread['sd']:.4f}; "
            f"{int(spread['n'])}-seed retraining, so the final budget, not the search's).")
    if gain is not None and spread["sd"] > 0:
        within = abs(gain) <= spread["sd"]
        reading = ("within one seed-to-seed standard deviation: as large as what a different seed changes, "
                   "not a clear effect") if within else "beyond one seed-to-seed standard deviation"
        text += f" A gain of {gain:+.4f} is {reading}."
    return text


def _load(path: Path | None) -> dict[str, Any] | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
