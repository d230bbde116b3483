"""Untuned scikit-learn baselines on the same split: is the tuned CNN worth it?

Logistic regression and an RBF ``SVC()`` on flattened pixels (the normalized arrays the CNN
trains on), fitted on the training split, scored on the test split. Kernel SVMs scale with
the square of the training set, so above ``MAX_SVC_SAMPLES`` (or ``MAX_VALUES`` pixels in
all) a baseline is skipped with a note instead of taking hours.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

MAX_SVC_SAMPLES = 20_000
MAX_VALUES = 200_000_000  # training pixels; beyond this even logistic regression takes minutes


MARGIN_KEY = "baseline_margin"  # the CNN's test accuracy minus the best baseline's


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def fit_baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{name: {"test_accuracy": a} or {"skipped": why}}`` for each baseline (no timings: DVC metrics
    should change only when the results do)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    values = int(np.prod(x_train.shape))
    models = {"logistic_regression": (LogisticRegression(max_iter=1000, random_state=seed), MAX_VALUES),
              "svc": (SVC(random_state=seed), MAX_SVC_SAMPLES)}
    out: dict[str, dict[str, Any]] = {}
    for name, (model, limit) in models.items():
        size = len(x_train) if name == "svc" else values
        if size > limit:
            unit = "training samples" if name == "svc" else "training pixels"
            out[name] = {"skipped": f"{size} {unit} > {limit}: too slow for a baseline"}
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(_flat(x_train), y_train)
        accuracy = float(np.mean(model.predict(_flat(x_test)) == y_test))
        out[name] = {"test_accuracy": accuracy}
    return out


def baseline_summary(baselines: dict[str, dict[str, Any]], cnn_accuracy: float) -> dict[str, Any]:
    """The metrics.json keys: ``baselines`` ({name: test accuracy}: short keys, so that ``dvc exp show``
    columns stay narrow), the skipped ones with why, the best one and the CNN's margin over it (None if
    all were skipped)."""
    scored = {k: v["test_accuracy"] for k, v in baselines.items() if "test_accuracy" in v}
    skipped = {k: v["skipped"] for k, v in baselines.items() if "skipped" in v}
    best = max(scored, key=scored.get) if scored else None
    return {"baselines": scored, **({"baselines_skipped": skipped} if skipped else {}), "best_baseline": best,
            MARGIN_KEY: round(cnn_accuracy - scored[best], 6) if best else None}
