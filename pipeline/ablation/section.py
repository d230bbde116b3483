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
from typing import Any, Protocol

from pipeline.verdicts import ABLATION, Verdict, fmt_p, read_verdicts

FIGURE_NAME = "ablation_effects.png"


class Document(Protocol):
    """What the section writes to (``pipeline.report.render.Document``); a protocol, so that this folder
    does not import the report's (the report imports this one)."""

    def heading(self, level: int, text: str) -> None: ...

    def paragraph(self, text: str) -> None: ...

    def table(self, headers: list[str], rows: list[list[str]]) -> None: ...

    def image(self, path: Path | None, alt: str) -> None: ...


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


def _rate(rate: Any) -> str:
    return f"{rate:g}" if isinstance(rate, (int, float)) else "?"


def _method(results: dict[str, Any]) -> str:
    """How the runs were made: seeds, the power rule and the learning rate, in one paragraph."""
    metric, seeds, epochs = results["metric"], results["seeds"], results["epochs"]
    if results.get("rates"):
        grids = "; ".join(f"{name} {', '.join(f'{r:g}' for r in grid)}"
                          for name, grid in (results.get("learning_rates") or {}).items())
        rate = (f"The learning rate is a nuisance hyperparameter here: every configuration, the best one included, "
                f"was trained at each rate of its optimizer's grid ({grids}) with {results.get('rate_seeds')} "
                f"selection seed(s) of its own for {results.get('rate_epochs')} epochs, and compared at the rate "
                f"with the best validation accuracy (the column learning rate; every comparison below re-tuned it).")
    else:
        rate = ("Every run used the best configuration's learning rate (ablate.retune_rate is false): a variant "
                "that would prefer another rate is judged at a rate chosen for something else.")
    return (
        f"The best configuration (trial {results.get('trial_id')}) was retrained with one dimension changed at a "
        f"time for {epochs} epochs, each variant with the same seeds as the best configuration (the first "
        f"{results.get('seeds_first', len(seeds))} or more of {', '.join(map(str, seeds))}): a seed fixes the data "
        f"order, the dropout draws and the initial weights, so each seed gives one paired difference "
        f"(variant - best) in {metric}. {rate} Seeds were added, up to ablate.max_seeds = "
        f"{results.get('max_seeds')}, until a difference of ablate.min_effect = {results.get('min_effect')} "
        f"would be found with probability "
        f"{results.get('power_target')} at the observed seed-to-seed spread; the column power says what was "
        f"reached. Mean difference, 95% t interval and paired t-test p per variant; a change counts only when "
        f"p < 0.05 and the mean difference is at least ablate.min_effect. The verdicts marked \"{ABLATION} "
        f"evidence\" above come from these runs (results/ablate/verdicts.json), one per question; test accuracy "
        f"is shown for information and decides nothing.")


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
    doc.paragraph(_method(results))
    rows = []
    for effect in found:
        stat, test = effect.get(metric), effect.get("test_accuracy")
        if not isinstance(stat, dict):
            continue
        rates = effect.get("rates") or {}
        rate_text = (f"{_rate(rates.get('best'))} / {_rate(rates.get('variant'))}" if rates.get("retuned")
                     else "not re-tuned")
        power = f"{stat['power']:.2f}" if stat.get("power") is not None else "-"
        rows.append([effect["dimension"], str(effect["value"]), rate_text, str(stat.get("n", len(seeds))),
                     f"{stat['best']:.3f}", f"{stat['variant']:.3f}", f"{stat['mean']:+.3f}", _interval(stat),
                     fmt_p(stat["p_value"]), power, "yes" if effect.get("clear") else "no",
                     f"{test['mean']:+.3f}" if isinstance(test, dict) else "-"])
    doc.table(["dimension", "variant value", "learning rate (best / variant)", "seeds", f"best {metric}",
               f"variant {metric}", "difference", "95% CI", "paired t-test",
               f"power for {results.get('min_effect')}", "clear", "test accuracy difference"], rows)
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
    run = results.get("mlflow") or {}  # the ablation's tracked run (the key predates other backends)
    if run.get("run_name"):
        where = {"mlflow": "MLflow"}.get(run.get("backend", "mlflow"), run.get("backend"))
        doc.paragraph(f"{where}: run {run['run_name']} ({run.get('run_id')}), one nested run per variant and "
                      "seed.")
    return {"evidence": ABLATION, "variants": len(rows), "seeds": seeds, "epochs": epochs,
            "run_id": run.get("run_id")}
