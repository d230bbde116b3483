"""Sparse categorical cross-entropy with label smoothing.

Keras 3's ``SparseCategoricalCrossentropy`` has no ``label_smoothing``: labels stay
integer class indices outside the model, and this loss one-hots them inside. Without
smoothing the stock Keras loss is used, so saved models need no custom object.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="pipeline")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Cross-entropy of integer labels against probabilities, with labels smoothed by ``label_smoothing``."""

    def __init__(self, label_smoothing: float = 0.0, name: str = "sparse_categorical_crossentropy",
                 **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        labels = ops.reshape(ops.cast(y_true, "int32"), ops.shape(y_pred)[:-1])
        one_hot = ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(one_hot, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def build_loss(label_smoothing: float) -> keras.losses.Loss:
    if float(label_smoothing) > 0:
        return SparseCategoricalCrossentropyWithSmoothing(label_smoothing=float(label_smoothing))
    return keras.losses.SparseCategoricalCrossentropy()
