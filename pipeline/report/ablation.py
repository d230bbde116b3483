"""The report's section on the controlled ablation (results/ablate/results.json and its figure).

The ablation's verdicts replace the search's by question id (``verdicts.merge``); this section
shows what they rest on: each variant's effect with its interval, and the figure. Without an
ablation (``ablate.enabled: false``, or the stage not run) it says that every verdict rests on
the search.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pipeline.report.render import Document
from pipeline.report.verdicts import ABLATION, Verdict, fmt_p, read_verdicts

FIGURE_NAME = "ablation_effects.png"


def load_results(path: Path | None) -> dict[str, Any] | None:
    """results.json of the ablate stage, or None when missing or unreadable."""
    if path is None or not Path(path).is_file():
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def stale_reason(results: dict[str, Any], best: dict[str, Any]) -> str | None:
    """Why an ablation does not belong to ``best`` (best_hparams.json), or None when it does.

    DVC reruns ablate after every new search; a report run by hand after a new search would
    otherwise answer with the previous winner's ablation.
    """
    differ = [key for key in ("search_run_id", "trial_id") if results.get(key) != best.get(key)]
    if differ:
        return f"the ablation of another best configuration ({' and '.join(differ)} differ)"
    return None


def _baseline_verdicts(path: Path) -> list[Verdict]:
    """The ablation's verdicts on its named baselines: no search question has their ids."""
    try:
        return [v for v in read_verdicts(path) if v.question.startswith("baseline.")]
    except (OSError, ValueError):
        return []


def _interval(stat: dict[str, Any]) -> str:
    return f"{stat['ci_low']:+.3f} to {stat['ci_high']:+.3f}"


def section(doc: Document, results_path: Path | None, figures_dir: Path, best: dict[str, Any]) -> dict[str, Any]:
    """Write the section; return what summary.json records about the ablation.

    ``results_path`` None (a caller that knows no ablation): no section.
    """
    if results_path is None:
        return {"evidence": "search", "reason": "no ablation given"}
    doc.heading(1, "Controlled ablation")
    results = load_results(results_path)
    if not results:
        why = f"no {results_path} (stage ablate not run)"
    elif not results.get("enabled"):
        why = "ablate.enabled is false"
    else:
        why = stale_reason(results, best)
    if why:
        doc.paragraph(f"No controlled ablation ({why}): every verdict above rests on the search's evidence, which "
                      "is observational (configurations differ in many dimensions at once).")
        return {"evidence": "search", "reason": why}
    metric, seeds, epochs = results["metric"], results["seeds"], results["epochs"]
    found = results.get("effects") or []
    doc.paragraph(
        f"The best configuration (trial {results.get('trial_id')}) was retrained with one dimension changed at a "
        f"time, each variant and the best configuration itself with the same {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}) for {epochs} epochs: a seed fixes the data order, the dropout draws and "
        f"the initial weights, so each seed gives one paired difference (variant - best) in {metric}. Mean "
        f"difference, 95% t interval and paired t-test p per variant; a change counts only when p < 0.05 and the "
        f"mean difference is at least ablate.min_effect = {results.get('min_effect')}. The verdicts marked "
        f"\"{ABLATION} evidence\" above come from these runs (results/ablate/verdicts.json); test accuracy is shown "
        f"for information and decides nothing.")
    rows = []
    for effect in found:
        stat, test = effect.get(metric), effect.get("test_accuracy")
        if not isinstance(stat, dict):
            continue
        rows.append([effect["dimension"], str(effect["value"]), f"{stat['best']:.3f}", f"{stat['variant']:.3f}",
                     f"{stat['mean']:+.3f}", _interval(stat), fmt_p(stat["p_value"]),
                     "yes" if effect.get("clear") else "no",
                     f"{test['mean']:+.3f}" if isinstance(test, dict) else "-"])
    doc.table(["dimension", "variant value", f"best {metric}", f"variant {metric}", "difference", "95% CI",
               "paired t-test", "clear", "test accuracy difference"], rows)
    for verdict in _baseline_verdicts(Path(results_path).parent / "verdicts.json"):
        name = verdict.question.removeprefix("baseline.")
        changes = (results.get("baselines") or {}).get(name, {})
        own = results.get("best_values") or {}
        doc.paragraph(f"Baseline {name} ({', '.join(f'{k} {v}' for k, v in changes.items())}; everything else as the "
                      f"best configuration, which has {', '.join(f'{k} {own.get(k)}' for k in changes)}) against "
                      f"the best configuration: {verdict.statement}.")
    for item in results.get("skipped") or []:
        doc.paragraph(f"Skipped {item['dimension']} = {item['value']}: {item['reason']}.")
    figure = Path(results_path).parent / "effects.png"
    if figure.is_file():
        target = figures_dir / FIGURE_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, target)
        doc.image(target, "ablation: effect of each change on the metric, with 95% intervals")
    mlflow = results.get("mlflow") or {}
    if mlflow.get("run_name"):
        doc.paragraph(f"MLflow: run {mlflow['run_name']} ({mlflow.get('run_id')}), one nested run per variant and "
                      "seed.")
    return {"evidence": ABLATION, "variants": len(rows), "seeds": seeds, "epochs": epochs,
            "run_id": mlflow.get("run_id")}
