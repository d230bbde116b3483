"""Untuned scikit-learn baselines on the same split: is the tuned CNN worth it?

Logistic regression and an RBF ``SVC()`` on flattened pixels (the normalized arrays the CNN
trains on), fitted on the training split, scored on the test split. Kernel SVMs scale with
the square of the training set, so above ``SUBSAMPLE`` training images both are fitted on a
stratified, seeded subsample of that many (minutes, not hours; the usual "SVC on 10,000 MNIST
images" reference) and say so: logistic regression on all 35,000 RGB 32x32 images of a big folder
ran single-threaded for over 6 minutes (stopped there), longer than the rest of the stage.
Logistic regression is skipped with a note above ``MAX_VALUES`` training pixels.

``SVC()`` is fitted on its RBF kernel matrix computed with BLAS (``kernel="precomputed"``, gamma as
``gamma="scale"`` sets it, C 1): the same model and the same predictions (``tests/test_baselines.py``),
but libsvm computes each kernel value in a loop of its own, and on 10,000 RGB 32x32 images that took
~5 minutes single-threaded, against ~15 s from the matrix (BENCHMARKS.md §11).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

SUBSAMPLE = 10_000  # training images a baseline is fitted on at most
MAX_VALUES = 200_000_000  # training pixels; beyond this even logistic regression takes minutes
PARALLEL_FROM = 5_000_000  # training pixels from which the baselines fit side by side
BASELINES = ("logistic_regression", "svc")
KERNEL_ROWS = 2_000  # test images per slice of the SVC's test kernel


MARGIN_KEY = "baseline_margin"  # the CNN's test accuracy minus the best baseline's


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)


def fit_baselines(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """``{name: {"test_accuracy": a} or {"skipped": why}}`` for each baseline (no timings: DVC metrics should
    change only when the results do), plus ``trained_on``: the training images, for one fitted on a subsample.

    Both fit at once, a process each where there are two cores: each is single-threaded, and on
    big folders each takes minutes.
    """
    from joblib import Parallel, delayed

    from pipeline.data.split import stratified_subsample

    x, y = x_train, y_train
    if len(y_train) > SUBSAMPLE:
        rows = stratified_subsample(y_train, SUBSAMPLE, seed)
        x, y = x_train[rows], y_train[rows]
    trained_on = {"trained_on": len(y)} if len(y) < len(y_train) else {}
    too_big = x.size > MAX_VALUES  # for logistic regression; the SVC's subsample bounds its own cost
    names = [name for name in BASELINES if name == "svc" or not too_big]
    out: dict[str, dict[str, Any]] = {
        name: {"skipped": f"{x.size} training pixels > {MAX_VALUES}: too slow for a baseline"}
        for name in BASELINES if name not in names}
    # a process each only where the fits take minutes: starting one costs a second or two
    jobs = min(len(names), os.cpu_count() or 1) if x.size > PARALLEL_FROM else 1
    scores = Parallel(n_jobs=jobs)(delayed(_test_accuracy)(name, seed, _flat(x), y, _flat(x_test), y_test)
                                   for name in names)
    out.update({name: {"test_accuracy": score, **trained_on} for name, score in zip(names, scores, strict=True)})
    return {name: out[name] for name in BASELINES}


def _test_accuracy(name: str, seed: int, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if name == "svc":
        return float(np.mean(svc_predict(x, y, x_test, seed) == y_test))
    model = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return float(np.mean(model.predict(x_test) == y_test))


def svc_predict(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int = 0) -> np.ndarray:
    """``SVC(random_state=seed).fit(x, y).predict(x_test)``, from kernel matrices computed with BLAS."""
    from sklearn.metrics.pairwise import rbf_kernel
    from sklearn.svm import SVC

    x = np.asarray(x, dtype=np.float64)
    variance = float(x.var())
    gamma = 1.0 / (x.shape[1] * variance) if variance != 0 else 1.0  # SVC's gamma="scale"
    model = SVC(kernel="precomputed", random_state=seed).fit(rbf_kernel(x, gamma=gamma), y)
    # the test kernel in slices: 7,500 x 10,000 values at once would be 600 MB more at peak
    return np.concatenate([model.predict(rbf_kernel(np.asarray(x_test[i:i + KERNEL_ROWS], dtype=np.float64), x,
                                                    gamma=gamma))
                           for i in range(0, len(x_test), KERNEL_ROWS)])


def baseline_summary(baselines: dict[str, dict[str, Any]], cnn_accuracy: float) -> dict[str, Any]:
    """The metrics.json keys: ``baselines`` ({name: test accuracy}: short keys, so that ``dvc exp show``
    columns stay narrow), the skipped ones with why, the best one and the CNN's margin over it (None if
    all were skipped)."""
    scored = {k: v["test_accuracy"] for k, v in baselines.items() if "test_accuracy" in v}
    skipped = {k: v["skipped"] for k, v in baselines.items() if "skipped" in v}
    trained_on = {k: v["trained_on"] for k, v in baselines.items() if "trained_on" in v}
    best = max(scored, key=scored.get) if scored else None
    return {"baselines": scored, **({"baselines_skipped": skipped} if skipped else {}),
            **({"baselines_trained_on": trained_on} if trained_on else {}), "best_baseline": best,
            MARGIN_KEY: round(cnn_accuracy - scored[best], 6) if best else None}
