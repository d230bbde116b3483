"""The KerasTuner HyperModel that assembles the search space into compiled Keras models."""

from __future__ import annotations

from typing import Any

import keras
import keras_tuner

from pipeline.config import SearchSpaceConfig
from pipeline.model.architectures import build_network
from pipeline.model.losses import build_loss
from pipeline.model.optimizers import build_optimizer
from pipeline.model.schedules import learning_rate_at
from pipeline.model.space import declare_hyperparameters, hyperparameters_from_values
from pipeline.model.training import fit_model

__all__ = ["CNNHyperModel", "declare_hyperparameters", "hyperparameters_from_values", "hypermodel_from_meta"]


class CNNHyperModel(keras_tuner.HyperModel):
    """Builds and fits the CNN of one trial.

    ``total_epochs`` is the horizon of the ``cosine`` and ``warmup_cosine`` schedules. A
    search should pass the tuner's ``max_epochs``: every trial then anneals over the same
    horizon whatever Hyperband round it is in, so a trial continued at ``initial_epoch=k``
    trains epoch k at exactly the rate of an uninterrupted run. Left at None, each call to
    ``fit`` uses its own ``epochs`` (right for a single retraining run, not for Hyperband).
    """

    def __init__(self, space: SearchSpaceConfig, input_shape: tuple[int, ...], num_classes: int,
                 seed: int = 42, total_epochs: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.space = space
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.seed = int(seed)
        self.total_epochs = total_epochs

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        values = declare_hyperparameters(self.space, hp)
        model = build_network(values, self.input_shape, self.num_classes, seed=self.seed)
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
        return fit_model(model, values, x, y, validation_data=validation_data, epochs=epochs,
                         initial_epoch=initial_epoch, seed=self.seed, total_epochs=self.total_epochs,
                         callbacks=callbacks, verbose=int(kwargs.pop("verbose", 0)))


def hypermodel_from_meta(space: SearchSpaceConfig, meta: dict[str, Any], *, seed: int,
                         total_epochs: int | None) -> CNNHyperModel:
    """The one factory: the hypermodel for the data ``meta.json`` describes (search, workers, train, ablation)."""
    return CNNHyperModel(space=space, input_shape=tuple(meta["input_shape"]), num_classes=int(meta["num_classes"]),
                         seed=seed, total_epochs=total_epochs)
