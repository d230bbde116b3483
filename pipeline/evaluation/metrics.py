"""Classification metrics from predicted probabilities: arrays in, plain numbers out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def predict_proba(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities of a Keras classifier, float64 (N, classes), rows summing to 1."""
    proba = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    proba = np.clip(proba, 0.0, None)
    sums = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, sums, out=np.full_like(proba, 1.0 / proba.shape[1]), where=sums > 0)


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float(np.mean(np.argmax(proba, axis=1) == np.asarray(y_true)))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, cross-entropy loss, macro precision/recall/F1 and per-class F1.

    ``loss`` is the plain cross-entropy of the probabilities (no regularization or label
    smoothing terms), so models trained with different settings compare fairly.
    """
    from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    y_true = np.asarray(y_true)
    y_pred = np.argmax(proba, axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro",
                                                               zero_division=0)
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "loss": float(log_loss(y_true, proba, labels=labels)),
        "precision_macro": float(precision),
        "recall_macro": float(recall),
        "f1_macro": float(f1),
        "f1_per_class": {str(name): float(value) for name, value in zip(class_names, per_class, strict=True)},
        "test_samples": int(len(y_true)),
    }


def confusion(y_true: np.ndarray, proba: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (actual, predicted), shape (classes, classes)."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(np.asarray(y_true), np.argmax(proba, axis=1), labels=list(range(num_classes)))
