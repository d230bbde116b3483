"""The KerasTuner HyperModel that assembles the search space into compiled Keras models."""

from __future__ import annotations

import math
from typing import Any

import keras
import keras_tuner

from pipeline.config import SearchSpaceConfig
from pipeline.model.architectures import build_network
from pipeline.model.losses import build_loss
from pipeline.model.optimizers import build_optimizer
from pipeline.model.schedules import ScheduleCallback, learning_rate_at
from pipeline.model.space import declare_hyperparameters, hyperparameters_from_values

__all__ = ["CNNHyperModel", "declare_hyperparameters", "hyperparameters_from_values"]


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

    def schedule_callback(self, hp: keras_tuner.HyperParameters, epochs: int,
                          steps_per_epoch: int | None = None) -> ScheduleCallback:
        values = declare_hyperparameters(self.space, hp)
        total = self.total_epochs if self.total_epochs is not None else epochs
        return ScheduleCallback(values, total_epochs=total, steps_per_epoch=steps_per_epoch)

    def fit(self, hp: keras_tuner.HyperParameters, model: keras.Model, x: Any, y: Any = None,
            validation_data: Any = None, epochs: int = 1, initial_epoch: int = 0,
            callbacks: list[keras.callbacks.Callback] | None = None, **kwargs: Any) -> keras.callbacks.History:
        """``model.fit`` with the trial's batch size and learning-rate schedule.

        The schedule callback runs first, so callbacks given here (trial loggers) find
        ``logs["learning_rate"]`` in every epoch's logs.
        """
        values = declare_hyperparameters(self.space, hp)
        kwargs.pop("batch_size", None)
        kwargs.setdefault("verbose", 0)
        batch_size = int(values["batch_size"])
        steps = kwargs.get("steps_per_epoch")
        if steps is None and _is_array_like(x):
            kept = 1.0 - float(kwargs.get("validation_split", 0.0) or 0.0)
            steps = max(1, math.ceil(math.floor(len(x) * kept) / batch_size))
        schedule = self.schedule_callback(hp, epochs, steps_per_epoch=steps)
        fit_kwargs: dict[str, Any] = {}
        if _is_array_like(x):
            fit_kwargs["batch_size"] = batch_size
        return model.fit(x, y, validation_data=validation_data, epochs=epochs, initial_epoch=initial_epoch,
                         callbacks=[schedule, *(callbacks or [])], **fit_kwargs, **kwargs)


def _is_array_like(x: Any) -> bool:
    """NumPy arrays / tensors (batched by Keras) as opposed to datasets and generators."""
    return hasattr(x, "shape") and hasattr(x, "__len__")

