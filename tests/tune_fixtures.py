"""Tiny data, params and hypermodels for the tune tests (digits subset, 3 epochs, small space)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TINY_SPACE = {
    "architecture": "plain", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap",
    "dense_units": 0, "activation": "relu",
    "init": {"choices": ["glorot_uniform", "he_normal"]}, "init_stddev": 0.05,
    "regularizer": "none", "reg_strength": 1.0e-4, "dropout": 0.0, "batch_norm": False,
    "weight_decay": 1.0e-4, "optimizer": {"choices": ["adam", "rmsprop"]}, "momentum": 0.9,
    "learning_rate": {"min": 1.0e-3, "max": 1.0e-2, "sampling": "log"}, "lr_schedule": "constant",
    "label_smoothing": 0.0, "batch_size": 64, "augment_translate": 0.0,
}


def tiny_data(n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images[:n].astype(np.float32)[..., None]
    x = (x - x.mean()) / x.std()
    y = digits.target[:n].astype(np.int32)
    cut = int(n * 2 / 3)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def tiny_params(tmp_path: Path, **tune: Any) -> Any:
    from pipeline.config import parse_params

    settings = {"tuner": "hyperband", "max_epochs": 3, "factor": 3, "early_stopping_patience": 3,
                "max_consecutive_failed_trials": 10, "directory": str(tmp_path / ".tuner"), **tune}
    return parse_params({"seed": 1, "search_space": TINY_SPACE, "tune": settings,
                         "mlflow": {"experiment": "tune-test"}})


def hypermodel(params: Any, **kwargs: Any) -> Any:
    from pipeline.model.hypermodel import CNNHyperModel

    return CNNHyperModel(space=params.search_space, input_shape=(8, 8, 1), num_classes=10, seed=params.seed,
                         total_epochs=params.tune.max_epochs, **kwargs)


def faulty_hypermodel(params: Any, *, nan_fit: int | None = None, interrupt_fit: int | None = None) -> Any:
    """The real hypermodel, but its ``nan_fit``-th fit starts from NaN weights and its ``interrupt_fit``-th
    fit is interrupted (KeyboardInterrupt, as from Ctrl-C) at the end of its first epoch."""
    import keras

    from pipeline.model.hypermodel import CNNHyperModel

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise KeyboardInterrupt

    class Faulty(CNNHyperModel):
        fits = 0

        def fit(self, hp: Any, model: Any, x: Any, y: Any = None, **kwargs: Any) -> Any:
            Faulty.fits += 1
            if Faulty.fits == nan_fit:  # NaN weights: NaN logits, NaN loss (NaN inputs vanish in ReLU)
                for weight in model.trainable_weights:
                    weight.assign(np.full(weight.shape, np.nan, dtype=weight.dtype))
            if Faulty.fits == interrupt_fit:
                kwargs["callbacks"] = [*kwargs.get("callbacks", []), Interrupt()]
            return super().fit(hp, model, x, y, **kwargs)

    return Faulty(space=params.search_space, input_shape=(8, 8, 1), num_classes=10, seed=params.seed,
                  total_epochs=params.tune.max_epochs)


def child_runs(tracking_uri: str, experiment: str = "tune-test") -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string="tags.run_type = 'trial'", max_results=1000)


def parent_runs(tracking_uri: str, experiment: str = "tune-test") -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], filter_string="tags.run_type = 'search'", max_results=100)
