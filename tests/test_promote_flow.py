"""promote / rollback against a real MLflow registry: first promotion, a win, a refusal, dry runs, rollback,
and a champion from before the self-contained models (normalized input) against a raw-input challenger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_params
from test_registry_model import GOOD_LR, WEAK_LR, prepare_data, train_and_evaluate, train_model

from pipeline.cli import main
from pipeline.stages.promote import decide

NAME = "digits-cnn"


def aliases() -> dict[str, str]:
    from mlflow import MlflowClient

    return {a: str(v) for a, v in MlflowClient().get_registered_model(NAME).aliases.items()}


def tags(version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient().get_model_version(NAME, version).tags


def register(project: Path, learning_rate: float, epochs: int, raw_input: bool = True) -> str:
    train_and_evaluate(project, learning_rate, epochs=epochs, raw_input=raw_input)
    assert main(["register"]) == 0
    return json.loads((project / "results/register/model.json").read_text())["version"]


def test_promote_flow(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(project)
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


def scores(out: str) -> dict[str, float]:
    """``{"challenger": accuracy, "champion": accuracy}`` from promote's two score lines."""
    found = {}
    for line in out.splitlines():
        label = line.split(" ", 1)[0]
        if label in ("challenger", "champion") and "test accuracy" in line:
            found[label] = float(line.split("test accuracy ")[1].split()[0])
    return found


def test_normalized_input_champion_is_scored_with_its_own_statistics(project: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import keras
    from mlflow import MlflowClient

    from pipeline.evaluation.model_io import model_fingerprint
    from pipeline.tracking import registry

    prepare_data(project)
    legacy = register(project, GOOD_LR, epochs=3, raw_input=False)
    assert registry.input_kind(f"models:/{NAME}/{legacy}") == "normalized"
    assert main(["promote"]) == 0
    legacy_accuracy = float(tags(legacy)["test_accuracy"])

    # the same split, now normalized another way: the old champion needs its standardization back
    write_params(project, preprocess={"normalization": "minmax"})
    assert main(["preprocess"]) == 0
    raw = register(project, GOOD_LR, epochs=3)
    assert registry.input_kind(f"models:/{NAME}/{raw}") == "raw"
    capsys.readouterr()
    assert main(["promote", "--dry-run"]) == 0
    found = scores(capsys.readouterr().out)
    assert found["champion"] == pytest.approx(legacy_accuracy, abs=1e-4)
    raw_accuracy = json.loads((project / "results/evaluate/metrics.json").read_text())["accuracy"]
    assert found["challenger"] == pytest.approx(raw_accuracy, abs=1e-4)

    # a normalized-input model without its statistics cannot be fed: refused with one line
    client = MlflowClient()
    train_model(project, WEAK_LR, epochs=1, raw_input=False)
    model = keras.saving.load_model(project / "models/model.keras")
    run_id = json.loads((project / "results/train/run.json").read_text())["run_id"]
    blind = registry.register_keras_model(model, name=NAME, run_id=run_id, input_shape=(8, 8, 1), num_classes=10,
                                          content_hash=model_fingerprint(model), metadata={}, tags={})
    client.set_registered_model_alias(NAME, "champion", blind.version)
    assert main(["promote", "--dry-run"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"error: champion models:/{NAME}/{blind.version} takes normalized input but records "
                                "no usable normalization statistics")
