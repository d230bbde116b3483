"""bench/ablation_stability.py: verdicts compared across pipeline seeds, figures in parentheses left out."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_script

REPO = Path(__file__).resolve().parents[1]


def _verdict(question: str, kind: str, winner: str | None = None, p: float = 0.3) -> dict:
    return {"question": question, "kind": kind, "winner": winner, "p_value": p, "evidence": "ablation",
            "statement": f"{kind} (p = {p})"}


def _project(root: Path, seed: int, optimizer: dict, p: float) -> Path:
    project = root / f"seed{seed}"
    (project / "results/ablate").mkdir(parents=True)
    (project / "results/report").mkdir(parents=True)
    (project / "params.yaml").write_text(f"seed: {seed}\n")
    verdicts = [_verdict("zero_init", "at_chance", p=p), optimizer]
    for folder in ("ablate", "report"):
        (project / "results" / folder / "verdicts.json").write_text(json.dumps({"verdicts": verdicts}))
    effect = {"dimension": "optimizer", "value": "momentum", "rates": {"best": 0.003, "variant": 0.1},
              "val_accuracy": {"mean": 0.01 * seed, "ci_low": -0.01, "ci_high": 0.02, "p_value": p, "n": 3}}
    (project / "results/ablate/results.json").write_text(json.dumps(
        {"best_values": {"optimizer": "adamw"}, "seconds": 800.0 + seed, "runs": [{}] * 57,
         "rates": {"best": {"rate": 0.003}}, "effects": [effect]}))
    return project


def test_agreement_ignores_the_figures_and_names_the_questions_that_move(tmp_path: Path) -> None:
    stability = load_script("ablation_stability", REPO / "bench" / "ablation_stability.py")
    projects = [_project(tmp_path, 0, _verdict("optimizer", "no_clear_difference", p=0.4), p=0.4),
                _project(tmp_path, 1, _verdict("optimizer", "no_clear_difference", p=0.7), p=0.7),
                _project(tmp_path, 2, _verdict("optimizer", "winner", "adamw", p=0.01), p=0.01)]
    out = tmp_path / "stability.json"
    assert stability.main([*map(str, projects), "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["seeds"] == [0, 1, 2]
    for key in ("ablation_verdicts", "report_verdicts"):
        part = payload[key]
        assert part["questions"] == 2 and part["agree"] == 1 and part["differing"] == ["optimizer"]
        assert part["by_question"]["optimizer"] == ["no_clear_difference", "no_clear_difference", "winner: adamw"]
    first = payload["projects"][0]
    assert first["ablation_seconds"] == 800.0 and first["runs"] == 57 and first["rates"] == {"best": 0.003}
    assert first["effects"]["optimizer=momentum"]["rates"] == {"best": 0.003, "variant": 0.1}
