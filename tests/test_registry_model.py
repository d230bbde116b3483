"""register stage: a new version with evidence and alias challenger, no duplicates, loadable with pyfunc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_train_stages import GOOD_LR, prepare, train_and_evaluate

from pipeline.cli import main

NAME = "digits-cnn"


def test_register_version_alias_tags_and_no_duplicate(project: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    prepare(project)
    metrics = train_and_evaluate(project)
    assert main(["register"]) == 0

    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert float(tags["test_accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-5)
    meta = json.loads((project / "data/processed/meta.json").read_text())
    assert tags["data_fingerprint"] == meta["fingerprint"]
    assert tags["search_run_id"] == "search-run-123"
    assert json.loads(tags["best_hparams"]) == {"learning_rate": GOOD_LR}
    assert "git_commit" not in tags or tags["git_commit"]  # no git repo in the temp project
    record = json.loads((project / "results/register/model.json").read_text())
    assert record["name"] == NAME and record["version"] == "1" and record["uri"] == f"models:/{NAME}/1"

    # forcing the stage again on the same model.keras reuses version 1
    assert main(["register"]) == 0
    assert [str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]

    # the registered model serves through the generic pyfunc interface
    x_test = np.load(project / "data/processed/x_test.npy")
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    proba = np.asarray(model.predict(x_test[:7]))
    assert proba.shape == (7, 10)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    inputs = model.metadata.get_input_schema().inputs[0]
    assert tuple(inputs.shape) == (-1, 8, 8, 1)


def test_register_without_train_run_is_one_clear_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: results/train/run.json: not found; run `python -m pipeline train` (or `dvc repro`) first")
