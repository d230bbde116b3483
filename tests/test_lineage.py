"""Data lineage: a model trained on one split is never scored or registered on another.

The case that made this necessary: preprocess ran again on new data (a new split), and the model
of the old split, half of whose training images were now test images, was evaluated and reported
as tested, with no warning.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_params
from test_registry_model import prepare_data, train_and_evaluate

from pipeline.cli import main
from pipeline.lineage import same_data


def test_same_data_rule() -> None:
    assert same_data("abc", "abc")
    assert not same_data("abc", "abd")
    assert same_data(None, "abc") and same_data("abc", None)  # outputs from before lineage say nothing


def test_new_split_refuses_the_old_model(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_data(project)
    train_and_evaluate(project, epochs=1)
    assert main(["register"]) == 0  # version 1, alias challenger, trained on the old split
    old = json.loads((project / "data/processed/meta.json").read_text())["fingerprint"]
    write_params(project, seed=7)  # a new split of the same images
    assert main(["preprocess"]) == 0
    new = json.loads((project / "data/processed/meta.json").read_text())["fingerprint"]
    assert new != old
    capsys.readouterr()

    for stage in ("evaluate", "register"):
        assert main([stage]) == 2, stage
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: models/model.keras was trained on other data")
        assert old[:12] in errors[0] and new[:12] in errors[0]
    assert main(["promote"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: challenger models:/digits-cnn/1 was trained "
                                                     "on other data")
    # nothing new was registered, no alias moved
    from pipeline.tracking import registry

    assert registry.aliases("digits-cnn") == {"challenger": "1"}
