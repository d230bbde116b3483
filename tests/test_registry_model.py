"""The self-contained model (raw pixels in) and the register stage: version, tags, signature, no duplicates.

``prepare_data`` and ``train_and_evaluate`` are shared by the promote, predict, gate and serving tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_params

from pipeline.cli import main
from pipeline.data.normalize import apply_normalization, fit_normalization, raw_from_processed

NAME = "digits-cnn"
GOOD_LR, WEAK_LR = 0.01, 1.0e-5


def prepare_data(project: Path, max_samples: int = 300) -> None:
    """A 300-image digits subset in data/processed; no gate on register or promote, so a weak model can win."""
    write_params(project, data={"max_samples": max_samples}, promote={"min_accuracy": 0.0},
                 register={"min_accuracy": 0.0, "require_beat_baseline": False})
    assert main(["preprocess"]) == 0


def train_model(project: Path, learning_rate: float = GOOD_LR, epochs: int = 3, raw_input: bool = True) -> None:
    """What the train stage leaves for evaluate and register: models/model.keras, a real MLflow train run
    and results/train/run.json. A tiny fixed network, so these tests do not depend on the search space;
    ``raw_input=False`` saves a model from before the self-contained export (normalized input)."""
    import keras

    from pipeline.config import load_params
    from pipeline.data.store import load_meta, load_split
    from pipeline.model.export import with_input_preprocessing
    from pipeline.model.fused_batch_norm import FusedBatchNormalization
    from pipeline.tracking.store import configure
    from pipeline.tracking.train_run import TrainRun

    meta = load_meta(project / "data/processed")
    (x, y), validation = (load_split(project / "data/processed", s) for s in ("train", "validation"))
    keras.utils.set_random_seed(0)
    # The fused batch norm of every batch-norm configuration: the export must give users Keras' own layer.
    model = keras.Sequential([keras.Input(tuple(meta["input_shape"])), keras.layers.Conv2D(8, 3, activation="relu"),
                              FusedBatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(meta["num_classes"], activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    tags = {"search_run_id": "search-run-123", "data_fingerprint": meta["fingerprint"]}
    with TrainRun(configure(load_params(project / "params.yaml")), {"learning_rate": learning_rate}, tags) as run:

        def log(epoch: int, logs: dict) -> None:
            run.log_epoch(epoch + 1, {**logs, "learning_rate": learning_rate})

        model.fit(x, y, validation_data=validation, epochs=epochs, batch_size=32, verbose=0,
                  callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=log)])
        if raw_input:
            model = with_input_preprocessing(model, meta["normalization"], pixel_max=meta["pixel_max"])
        (project / "models").mkdir(exist_ok=True)
        model.save(project / "models/model.keras")
        record = {"run_id": run.run_id, "search_run_id": "search-run-123", "hparams": {"learning_rate": learning_rate},
                  "data": meta}
    (project / "results/train").mkdir(parents=True, exist_ok=True)
    (project / "results/train/run.json").write_text(json.dumps(record))


def train_and_evaluate(project: Path, learning_rate: float = GOOD_LR, epochs: int = 3,
                       raw_input: bool = True) -> dict:
    train_model(project, learning_rate, epochs, raw_input)
    assert main(["evaluate"]) == 0
    return json.loads((project / "results/evaluate/metrics.json").read_text())


@pytest.mark.parametrize("method", ["standardize", "minmax", "none"])
def test_raw_from_processed_inverts_apply_normalization(method: str) -> None:
    x = np.random.default_rng(0).integers(0, 17, size=(20, 4, 4, 2)).astype(np.float32)
    x[..., 1] = 5.0  # a constant channel: std/range 0 is stored as 1
    stats = fit_normalization(x, method)
    back = raw_from_processed(apply_normalization(x, stats), stats)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, atol=1e-5)


@pytest.mark.parametrize(("method", "pixel_max", "dtype"), [("standardize", 16.0, "float32"),
                                                            ("minmax", 255.0, "uint8"), ("none", None, "float32")])
def test_with_input_preprocessing_matches_the_trained_model(tmp_path: Path, method: str, pixel_max: float | None,
                                                            dtype: str) -> None:
    import keras

    from pipeline.model.export import takes_raw_input, with_input_preprocessing

    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(12, 6, 5, 3)).astype(np.float32)
    stats = fit_normalization(raw, method)
    trained = keras.Sequential([keras.Input((6, 5, 3)), keras.layers.Flatten(), keras.layers.Dense(4),
                                keras.layers.Softmax()])
    wrapped = with_input_preprocessing(trained, stats, pixel_max=pixel_max)
    assert takes_raw_input(wrapped) and not takes_raw_input(trained)
    assert wrapped.inputs[0].dtype == dtype and wrapped.input_shape == (None, 6, 5, 3)
    expected = trained.predict(apply_normalization(raw, stats), verbose=0)
    np.testing.assert_allclose(wrapped.predict(raw.astype(dtype), verbose=0), expected, atol=1e-5)

    path = tmp_path / "raw.keras"
    wrapped.save(path)
    loaded = keras.saving.load_model(path, custom_objects={})  # built-in layers only
    np.testing.assert_allclose(loaded.predict(raw.astype(dtype), verbose=0), expected, atol=1e-5)
    assert takes_raw_input(loaded)
    with pytest.raises(ValueError, match="already normalizes"):
        with_input_preprocessing(loaded, stats)


def test_register_version_alias_tags_signature_and_no_duplicate(project: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    prepare_data(project)
    metrics = train_and_evaluate(project)
    record = json.loads((project / "results/train/run.json").read_text())
    assert metrics["mlflow_run_id"] == record["run_id"] and len(metrics["model_sha256"]) == 64
    assert "f1_per_class" not in metrics and "test_samples" not in metrics  # details stay in MLflow
    assert main(["register"]) == 0

    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert [str(v.version) for v in versions] == ["1"]
    assert str(client.get_model_version_by_alias(NAME, "challenger").version) == "1"
    tags = client.get_model_version(NAME, "1").tags
    meta = json.loads((project / "data/processed/meta.json").read_text())
    assert float(tags["test_accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-5)
    assert tags["data_fingerprint"] == meta["fingerprint"]
    assert tags["search_run_id"] == "search-run-123" and tags["train_run_id"] == record["run_id"]
    assert tags["gate"] == "passed"
    # only what a person reads: hyperparameters and the other test metrics are on the train run
    assert set(tags) <= {"test_accuracy", "data_fingerprint", "git_commit", "search_run_id", "train_run_id",
                         "dvc_experiment", "dvc_baseline_rev", "model_content_sha256", "gate", "gate_reason"}
    run = client.get_run(record["run_id"])
    assert float(run.data.params["learning_rate"]) == GOOD_LR
    assert "test_samples" in run.data.metrics and "test_test_samples" not in run.data.metrics
    assert "test_f1_3" in run.data.metrics and "lr" in run.data.metrics and "learning_rate" not in run.data.metrics
    written = json.loads((project / "results/register/model.json").read_text())
    assert written == {"name": NAME, "version": "1", "gate": "passed", "alias": "challenger"}

    # forcing the stage again on the same model.keras reuses version 1
    assert main(["register"]) == 0
    assert [str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")] == ["1"]

    # served through the generic pyfunc interface on raw 0..16 pixels, as the digits come
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    inputs = model.metadata.get_input_schema().inputs[0]
    assert tuple(inputs.shape) == (-1, 8, 8, 1) and inputs.type == np.dtype("float32")
    assert model.metadata.metadata["input"] == "raw"
    x_raw = raw_from_processed(np.load(project / "data/processed/x_test.npy"), meta["normalization"])
    assert 0.0 <= x_raw.min() and x_raw.max() <= 16.0 + 1e-4
    proba = np.asarray(model.predict(x_raw[:7]))
    assert proba.shape == (7, 10)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    # what `mlflow models serve` installs: pinned to this environment, given rather than inferred
    from importlib.metadata import version

    requirements = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1")) / "requirements.txt"
    pinned = set(requirements.read_text().split())
    assert {f"keras=={version('keras')}", f"tensorflow=={version('tensorflow')}"} <= pinned
    assert any(line.startswith("mlflow==") for line in pinned)


def test_register_without_train_run_is_one_clear_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["register"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: results/train/run.json: not found; run `python -m pipeline train` (or `dvc repro`) first")


def test_image_source_model_is_registered_for_uint8_pixels(project: Path) -> None:
    """0..255 sources (image folders, Keras' datasets): the signature asks for uint8, as Pillow gives them."""
    import keras
    import mlflow
    from mlflow import MlflowClient

    from pipeline.config import load_params
    from pipeline.model.export import with_input_preprocessing
    from pipeline.tracking import registry
    from pipeline.tracking.store import configure

    raw = np.random.default_rng(2).integers(0, 256, size=(10, 6, 6, 1)).astype(np.uint8)
    stats = fit_normalization(raw.astype(np.float32), "standardize")
    trained = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(2),
                                keras.layers.Softmax()])
    model = with_input_preprocessing(trained, stats, pixel_max=255.0)
    configure(load_params(project / "params.yaml"))  # this project's store and experiment, as a stage does
    client = MlflowClient()
    run_id = client.create_run(client.get_experiment_by_name("cnn-tuning").experiment_id).info.run_id
    version = registry.register_keras_model(
        model, name="images-cnn", run_id=run_id, input_shape=(6, 6, 1), num_classes=2, content_hash="x",
        metadata={"pixel_max": 255.0}, tags={}, input_kind="raw", input_dtype=str(model.inputs[0].dtype))
    loaded = mlflow.pyfunc.load_model(version.uri)
    spec = loaded.metadata.get_input_schema().inputs[0]
    assert spec.type == np.dtype("uint8") and tuple(spec.shape) == (-1, 6, 6, 1)
    expected = trained.predict(apply_normalization(raw.astype(np.float32), stats), verbose=0)
    np.testing.assert_allclose(np.asarray(loaded.predict(raw)), expected, atol=1e-5)
    assert registry.input_kind(version.uri) == "raw"
