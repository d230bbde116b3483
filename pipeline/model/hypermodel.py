"""The KerasTuner HyperModel that assembles the search space into compiled Keras models."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner
import numpy as np

from pipeline.config import SearchSpaceConfig
from pipeline.model.architectures import build_network
from pipeline.model.losses import build_loss
from pipeline.model.optimizers import build_optimizer
from pipeline.model.precision import resolve_precision
from pipeline.model.schedules import learning_rate_at
from pipeline.model.space import declare_hyperparameters, hyperparameters_from_values
from pipeline.model.training import fit_model, subsample_rows

__all__ = ["CNNHyperModel", "declare_hyperparameters", "hyperparameters_from_values", "hypermodel_from_meta",
           "resolve_fidelity"]

FIDELITIES = ("epochs", "data")
# From this many training images, ``auto`` picks data fidelity: an epoch of MNIST's 60,000 took
# minutes on 2 cores (issue 25), so the first rungs at full data cost what a small search does.
DATA_FIDELITY_MIN_IMAGES = 20_000


class CNNHyperModel(keras_tuner.HyperModel):
    """Builds and fits the CNN of one trial.

    ``total_epochs`` is the horizon of the ``cosine`` and ``warmup_cosine`` schedules. A
    search should pass the tuner's ``max_epochs``: every trial then anneals over the same
    horizon whatever Hyperband round it is in, so a trial continued at ``initial_epoch=k``
    trains epoch k at exactly the rate of an uninterrupted run. Left at None, each call to
    ``fit`` uses its own ``epochs`` (right for a single retraining run, not for Hyperband).
    """

    def __init__(self, space: SearchSpaceConfig, input_shape: tuple[int, ...], num_classes: int,
                 seed: int = 42, total_epochs: int | None = None, fidelity: str = "epochs",
                 precision: str = "float32", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if fidelity not in FIDELITIES:
            raise ValueError(f"fidelity {fidelity!r}; allowed: {', '.join(FIDELITIES)}")
        self.space = space
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.total_epochs = total_epochs
        self.fidelity = fidelity
        self.precision = precision  # a Keras dtype policy (``pipeline.model.precision.resolve_precision``)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = declare_hyperparameters(self.space, hp)
        model = build_network(values, self.input_shape, self.num_classes, seed=self.seed, precision=self.precision)
        # the schedule needs a horizon only while fitting; the callback sets the real rate
        start_lr = learning_rate_at(values, 0, total_epochs=self.total_epochs or 1)
        model.compile(optimizer=build_optimizer(values, start_lr),
                      loss=build_loss(values["label_smoothing"]), metrics=["accuracy"])
        return model

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, x: Any, y: Any = None,
            validation_data: Any = None, epochs: int = 1, initial_epoch: int = 0,
            callbacks: list[keras.callbacks.Callback] | None = None, **kwargs: Any) -> keras.callbacks.History:
        """``fit_model`` with the trial's values: its batch size, schedule and per-epoch seeds.

        KerasTuner passes its own ``batch_size``/``shuffle`` only when a user asks; the trial's
        batch size and the seeded epoch order win.
        """
        for ignored in ("batch_size", "shuffle", "validation_batch_size", "steps_per_epoch"):
            kwargs.pop(ignored, None)
        values = declare_hyperparameters(self.space, hp)
        rows = self.fidelity_rows(len(x), epochs, int(values["batch_size"]))
        if rows is not None:  # a copy of the subsample only (from a memory map: those rows read)
            x, y = x[rows], y[rows]
        self.last_fit_rows = len(x)  # what an epoch of this fit cost is proportional to (the tuner records it)
        return fit_model(model, values, x, y, validation_data=validation_data, epochs=epochs,
                         initial_epoch=initial_epoch, seed=self.seed, total_epochs=self.total_epochs,
                         callbacks=callbacks, verbose=int(kwargs.pop("verbose", 0)))

    def trial_rows(self, hp: keras_tuner.HyperParameters, n: int) -> int:
        """How many of ``n`` training rows the trial with ``hp`` trains on: what each of its epochs costs
        (``fit`` with Hyperband's ``tuner/epochs``; a tuner without rungs fits to the full budget)."""
        target = hp.values.get("tuner/epochs")
        if target is None:
            return n
        batch_size = int(declare_hyperparameters(self.space, hp.copy())["batch_size"])
        rows = self.fidelity_rows(n, int(target), batch_size)
        return n if rows is None else len(rows)

    def fidelity_rows(self, n: int, epochs: int, batch_size: int) -> np.ndarray | None:
        """The training rows a fit to ``epochs`` uses under data fidelity; None: all of them.

        Hyperband fits a rung to ``tuner/epochs`` of ``total_epochs`` (its ``max_epochs``); with
        ``fidelity="data"`` that fraction of the epochs also trains on that fraction of the data
        (``subsample_rows``), validation always on all of it so that rungs compare. The last rung,
        a final retraining and any other fit to ``total_epochs`` or more use every row.
        """
        if self.fidelity != "data" or not self.total_epochs or epochs >= self.total_epochs:
            return None
        return subsample_rows(n, epochs, self.total_epochs, self.seed, minimum=batch_size)


def resolve_fidelity(fidelity: str, train_images: int) -> str:
    """``auto``: data fidelity from ``DATA_FIDELITY_MIN_IMAGES`` training images (where epochs cost minutes)."""
    if fidelity == "auto":
        return "data" if train_images >= DATA_FIDELITY_MIN_IMAGES else "epochs"
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity {fidelity!r}; allowed: auto, {', '.join(FIDELITIES)}")
    return fidelity


def hypermodel_from_meta(space: SearchSpaceConfig, meta: dict[str, Any], *, seed: int, total_epochs: int | None,
                         fidelity: str = "epochs", precision: str = "float32") -> CNNHyperModel:
    """The one factory: the hypermodel for the data ``meta.json`` describes (search, workers, train, ablation).

    ``fidelity``: ``epochs`` (Hyperband's rungs differ in epochs only), ``data`` (also in the
    fraction of the training set, see ``CNNHyperModel.fidelity_rows``) or ``auto`` (by the
    training set's size, ``resolve_fidelity``). ``precision``: params.yaml's ``precision``, resolved
    on this machine (``pipeline.model.precision``).
    """
    return CNNHyperModel(space=space, input_shape=tuple(meta["input_shape"]), num_classes=int(meta["num_classes"]),
                         seed=seed, total_epochs=total_epochs,
                         fidelity=resolve_fidelity(fidelity, int(meta.get("sizes", {}).get("train", 0))),
                         precision=resolve_precision(precision))
