"""Do the report's verdicts hold across seeds of the whole pipeline? (issue 22, item 3)

Reads the projects of finished ``dvc repro report`` runs that differ only in ``seed`` (each a clone
of this repository with its own ``params.yaml``), and compares, question by question, what each
one concluded: the report's ``results/report/verdicts.json`` (the ablation's records replace the
search's where the ablation ran) and the ablation's own ``results/ablate/verdicts.json``, reduced
to what a reader takes away (the verdict's kind and winner; the figures in parentheses are left
out, as they move with any seed). It also lists the learning rate each side was compared at, the
ablation's wall time and how many runs it trained.

    python bench/ablation_stability.py /tmp/stab0 /tmp/stab1 /tmp/stab2 \
        --out bench/results/ablation_stability_digits.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipeline.atomic import write_json_atomic  # noqa: E402


def _verdicts(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    return {v["question"]: v for v in json.loads(path.read_text(encoding="utf-8"))["verdicts"]}


def conclusion(verdict: dict[str, Any] | None) -> str:
    """What a reader takes away: the kind, and the winner where there is one."""
    if verdict is None:
        return "(none)"
    return verdict["kind"] + (f": {verdict['winner']}" if verdict.get("winner") else "")


def project_summary(project: Path) -> dict[str, Any]:
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    results = json.loads((project / "results/ablate/results.json").read_text(encoding="utf-8"))
    ablation = _verdicts(project / "results/ablate/verdicts.json")
    report = _verdicts(project / "results/report/verdicts.json")
    effects = {f"{e['dimension']}={e['value']}": {
        "effect": round(e["val_accuracy"]["mean"], 4), "ci": [round(e["val_accuracy"]["ci_low"], 4),
                                                              round(e["val_accuracy"]["ci_high"], 4)],
        "p_value": e["val_accuracy"].get("p_value"), "n": e["val_accuracy"]["n"], "rates": e.get("rates")}
        for e in results["effects"]}
    return {"project": str(project), "seed": params["seed"], "best_values": results["best_values"],
            "ablation_seconds": results.get("seconds"), "runs": len(results["runs"]),
            "rates": {k: v["rate"] for k, v in (results.get("rates") or {}).items()},
            "ablation": {q: conclusion(v) for q, v in ablation.items()},
            "report": {q: conclusion(v) for q, v in report.items()},
            "report_evidence": {q: v.get("evidence") for q, v in report.items()}, "effects": effects}


def compare(summaries: list[dict[str, Any]], key: str) -> dict[str, Any]:
    questions = sorted({q for s in summaries for q in s[key]})
    rows = {q: [s[key].get(q, "(none)") for s in summaries] for q in questions}
    differing = sorted(q for q, row in rows.items() if len(set(row)) > 1)
    return {"questions": len(questions), "agree": len(questions) - len(differing), "differing": differing,
            "by_question": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ablation_stability.json"))
    args = parser.parse_args(argv)
    summaries = [project_summary(p) for p in args.projects]
    payload = {"benchmark": "ablation_stability", "seeds": [s["seed"] for s in summaries],
               "ablation_verdicts": compare(summaries, "ablation"), "report_verdicts": compare(summaries, "report"),
               "projects": summaries}
    write_json_atomic(args.out, payload, sort_keys=False)
    for key in ("ablation_verdicts", "report_verdicts"):
        part = payload[key]
        print(f"{key}: {part['agree']} of {part['questions']} agree across seeds {payload['seeds']}")
        for question in part["differing"]:
            print(f"  {question}: {part['by_question'][question]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
