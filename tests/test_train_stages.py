"""train and evaluate stages on a tiny digits subset with a real MLflow store.

The helpers here (``prepare``, ``train_and_evaluate``) are shared by the registry,
promote and predict tests.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_cli, write_params

from pipeline.cli import main

# A small fixed network; only the learning rate is "searched", so best_hparams.json decides
# whether the retrained model is good (0.01) or nearly untrained (1e-5).
TINY_SPACE = {
    "architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "flatten", "dense_units": 0,
    "init": "he_normal", "regularizer": "none", "dropout": 0.0, "batch_norm": False, "optimizer": "adam",
    "learning_rate": {"choices": [1.0e-5, 0.01]}, "lr_schedule": "constant", "batch_size": 32,
    "weight_decay": 1.0e-4, "reg_strength": 1.0e-4, "augment_translate": 0.0,
}
GOOD_LR, WEAK_LR = 0.01, 1.0e-5


def prepare(project: Path, max_samples: int = 300) -> None:
    """Tiny params and data/processed; promote.min_accuracy 0 so a weak model can be champion."""
    write_params(project, search_space=TINY_SPACE, train={"epochs": 3, "early_stopping_patience": 2},
                 data={"max_samples": max_samples}, promote={"min_accuracy": 0.0})
    assert main(["preprocess"]) == 0


def write_best_hparams(project: Path, learning_rate: float) -> None:
    meta = json.loads((project / "data/processed/meta.json").read_text())
    best = {"trial_id": "0007", "objective": "val_accuracy", "score": 0.9, "values": {"learning_rate": learning_rate},
            "epochs": 3, "tuner": "hyperband", "search_run_id": "search-run-123",
            "data_fingerprint": meta["fingerprint"], "search_hash": "abc"}
    path = project / "results/tune/best_hparams.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(best))


def train_and_evaluate(project: Path, learning_rate: float = GOOD_LR, epochs: int | None = None) -> dict:
    write_best_hparams(project, learning_rate)
    extra = ["-S", f"train.epochs={epochs}"] if epochs else []
    assert main(["train", *extra]) == 0
    assert main(["evaluate"]) == 0
    return json.loads((project / "results/evaluate/metrics.json").read_text())


def test_train_and_evaluate_outputs(project: Path) -> None:
    from mlflow import MlflowClient

    from pipeline.model.precision import resolve_precision

    prepare(project)
    metrics = train_and_evaluate(project)

    assert (project / "models/model.keras").is_file()
    with open(project / "results/train/history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
    # epochs count from 0, like the MLflow steps of the same run
    assert [int(r["epoch"]) for r in rows] == list(range(len(rows))) and 1 <= len(rows) <= 3
    assert float(rows[0]["learning_rate"]) == pytest.approx(GOOD_LR)

    record = json.loads((project / "results/train/run.json").read_text())
    assert {"run_id", "experiment_id", "tracking_uri", "hparams", "data"} <= set(record)
    client = MlflowClient()
    run = client.get_run(record["run_id"])
    assert run.info.run_name.startswith("train-")
    assert run.data.tags["search_run_id"] == "search-run-123"
    assert run.data.tags["precision"] == resolve_precision("auto")  # params.yaml's default, on this machine
    assert float(run.data.params["learning_rate"]) == GOOD_LR
    assert len(client.get_metric_history(record["run_id"], "val_accuracy")) == len(rows)
    # evaluate's numbers on the same run
    assert run.data.metrics["test_accuracy"] == pytest.approx(metrics["accuracy"])
    assert "test_f1_3" in run.data.metrics and "generalization_gap" in run.data.metrics

    assert run.data.metrics["test_samples"] == 45 and 0.3 < metrics["accuracy"] <= 1.0
    assert {f"test_f1_{i}" for i in range(10)} <= set(run.data.metrics)
    assert metrics["generalization_gap"] == pytest.approx(run.data.metrics["train_accuracy"] - metrics["accuracy"])
    for key in ("loss", "f1_macro"):
        assert isinstance(metrics[key], float)
    # the untuned baselines on the same split, in metrics.json and on the run
    assert set(metrics["baselines"]) == {"logistic_regression", "svc"}
    best = metrics["best_baseline"]
    assert metrics["baseline_margin"] == pytest.approx(metrics["accuracy"] - metrics["baselines"][best], abs=1e-6)
    assert run.data.metrics[f"baseline_{best}_test_accuracy"] == pytest.approx(metrics["baselines"][best])
    assert "baseline_margin" in run.data.metrics
    with open(project / "results/evaluate/confusion.csv", newline="") as handle:
        confusion = list(csv.DictReader(handle))
    assert len(confusion) == 45 and set(confusion[0]) == {"actual", "predicted"}
    assert {row["actual"] for row in confusion} <= {str(i) for i in range(10)}
    correct = sum(row["actual"] == row["predicted"] for row in confusion)
    assert correct / 45 == pytest.approx(metrics["accuracy"])
    assert (project / "results/evaluate/confusion.png").stat().st_size > 1000


def test_train_without_best_hparams_is_one_clear_line(project: Path) -> None:
    result = run_cli(["train"], cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: results/tune/best_hparams.json: not found; run `python -m pipeline tune` (or `dvc repro`) first"]


def test_a_retrained_model_short_of_the_search_warns_tags_and_keeps_the_trial_checkpoint(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Planted: the search reported 1.0 for a trial whose own checkpoint trained 8 epochs; train gets 1.
    In this process (``main``, as a CLI run without another TensorFlow start-up)."""
    from mlflow import MlflowClient

    from pipeline.config import load_params
    from pipeline.model.final import TRIAL_CHECKPOINT_NAME
    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
    from pipeline.model.training import fit_model, save_training_state

    prepare(project)
    write_best_hparams(project, GOOD_LR)
    params = load_params(project / "params.yaml")
    meta = json.loads((project / "data/processed/meta.json").read_text())
    from pipeline.data.store import load_split

    x, y = load_split(project / "data/processed", "train")
    hp = hyperparameters_from_values(params.search_space, {"learning_rate": GOOD_LR})
    trial_model = CNNHyperModel(space=params.search_space, input_shape=tuple(meta["input_shape"]),
                                num_classes=10, seed=params.seed).build(hp)
    fit_model(trial_model, dict(hp.values), x, y, validation_data=None, epochs=8, seed=params.seed)
    trial_dir = project / ".tuner/search-abc/trial_0007"
    save_training_state(trial_model, trial_dir / TRIAL_CHECKPOINT_NAME)
    best_path = project / "results/tune/best_hparams.json"
    best = json.loads(best_path.read_text())
    best["score"] = 1.0
    best["top"] = [{"trial_id": "0007", "score": 1.0, "values": {"learning_rate": GOOD_LR}, "epochs": 8,
                    "trial_dir": str(trial_dir)}]
    best_path.write_text(json.dumps(best))

    capsys.readouterr()
    assert main(["train", "-S", "train.epochs=1", "-S", "train.seeds=1"]) == 0
    stderr = capsys.readouterr().err
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: trial 0007")]
    assert len(warnings) == 1 and "kept the trial's own checkpoint" in warnings[0]
    record = json.loads((project / "results/train/run.json").read_text())
    member = record["members"][0]
    assert member["source"] == "trial checkpoint" and member["shortfall"] > 0.01
    assert member["score"] >= member["retrained_score"]
    tags = MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).data.tags
    assert tags["reproduced_search"] == "false" and tags["short_of_search"].startswith("0007:")

    # preprocess again on a new split: that checkpoint's training images are partly today's test images,
    # so train must retrain, never fall back to it (the search's score was measured on other data)
    assert main(["preprocess", "-S", "seed=7"]) == 0
    capsys.readouterr()
    assert main(["train", "-S", "train.epochs=1", "-S", "train.seeds=1"]) == 0
    stderr = capsys.readouterr().err
    assert "comes from a search on other data" in stderr
    assert not [line for line in stderr.splitlines() if line.startswith("warning: trial 0007")]
    member = json.loads((project / "results/train/run.json").read_text())["members"][0]
    assert member["source"] == "retrained"


def test_evaluate_with_a_model_for_other_data_is_one_clear_line(project: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import keras

    prepare(project)
    write_best_hparams(project, GOOD_LR)
    assert main(["train", "-S", "train.epochs=1"]) == 0
    inputs = keras.Input((6, 6, 1))
    other = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    other.save(project / "models/model.keras")
    capsys.readouterr()
    assert main(["evaluate"]) == 2  # in this process: the command's own error handling, as on a command line
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "error: models/model.keras takes images of shape (6, 6, 1) but data/processed holds (8, 8, 1)")
