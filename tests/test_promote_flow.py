"""promote / rollback against a real MLflow registry: first promotion, a win, a refusal, dry runs, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train_stages import GOOD_LR, WEAK_LR, prepare, train_and_evaluate

from pipeline.cli import main
from pipeline.stages.promote import decide

NAME = "digits-cnn"


def aliases() -> dict[str, str]:
    from mlflow import MlflowClient

    return {a: str(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def tags(version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(NAME, version).tags


def register(project: Path, learning_rate: float, epochs: int) -> str:
    train_and_evaluate(project, learning_rate, epochs=epochs)
    assert main(["register"]) == 0
    return json.loads((project / "results/register/model.json").read_text())["version"]


def test_promote_flow(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare(project)
    assert main(["promote"]) == 2
    assert "has no version with alias 'challenger'" in capsys.readouterr().err

    weak = register(project, WEAK_LR, epochs=1)
    assert main(["promote", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "first promotion" in out and "dry run: would promote" in out
    assert aliases() == {"challenger": weak}
    assert "promote.decision" not in tags(weak)

    assert main(["promote"]) == 0
    out = capsys.readouterr().out
    assert "first promotion" in out and "promoted" in out
    assert aliases() == {"challenger": weak, "champion": weak}
    assert tags(weak)["promote.decision"] == "promoted"
    assert main(["promote"]) == 0
    assert "already champion" in capsys.readouterr().out

    good = register(project, GOOD_LR, epochs=3)
    assert good != weak
    assert main(["promote", "--dry-run"]) == 0
    assert "dry run: would promote" in capsys.readouterr().out
    assert aliases()["champion"] == weak
    assert main(["promote"]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out
    assert aliases() == {"challenger": good, "champion": good, "previous-champion": weak}
    good_tags = tags(good)
    assert good_tags["promote.champion_version"] == weak
    assert float(good_tags["promote.challenger_accuracy"]) > float(good_tags["promote.champion_accuracy"])

    # a worse challenger is refused, with both scores printed and kept as tags
    worse = register(project, WEAK_LR, epochs=1)
    assert main(["promote"]) == 0
    out = capsys.readouterr().out
    assert "refused" in out
    assert f"challenger digits-cnn version {worse}: test accuracy" in out
    assert f"champion   digits-cnn version {good}: test accuracy" in out
    assert aliases()["champion"] == good and aliases()["previous-champion"] == weak
    worse_tags = tags(worse)
    assert worse_tags["promote.decision"] == "refused"
    assert {"promote.challenger_accuracy", "promote.champion_accuracy", "promote.reason"} <= set(worse_tags)

    # a required improvement of 100 percentage points refuses even a better model
    assert main(["promote", "--dry-run", "--min-improvement", "1.0"]) == 0
    assert "would keep the champion" in capsys.readouterr().out

    assert main(["rollback"]) == 0
    assert "rolled back" in capsys.readouterr().out
    assert aliases()["champion"] == weak and aliases()["previous-champion"] == good


def test_rollback_without_previous_champion(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollback"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1  # (MLflow's own INFO lines about creating the store may precede it)
    assert errors[0].startswith("error: registered model 'digits-cnn' has no alias 'previous-champion'")


@pytest.mark.parametrize(("challenger", "champion", "min_improvement", "min_accuracy", "promoted"), [
    (0.9, None, 0.0, 0.5, True),    # first promotion
    (0.4, None, 0.0, 0.5, False),   # below min_accuracy even without a champion
    (0.9, 0.9, 0.0, 0.5, False),    # a tie is no win
    (0.91, 0.9, 0.0, 0.5, True),
    (0.91, 0.9, 0.02, 0.5, False),  # not by the required margin
    (0.92, 0.9, 0.02, 0.5, True),
])
def test_decide(challenger, champion, min_improvement, min_accuracy, promoted) -> None:
    assert decide(challenger, champion, min_improvement, min_accuracy).promote is promoted
