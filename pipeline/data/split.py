"""Stratified train/validation/test split (scikit-learn's, in numpy: ``stratified``), deterministic for a seed."""

from __future__ import annotations

import numpy as np

from pipeline.data.stratified import stratified_train_test_split
from pipeline.errors import DataError


def stratified_subsample(y: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``max_samples`` items keeping the class proportions."""
    indices = np.arange(len(y))
    if max_samples is None or max_samples >= len(y):
        return indices
    kept, _ = stratified_train_test_split(indices, y, train_size=max_samples, seed=seed)
    return np.sort(kept)


def split_indices(y: np.ndarray, validation: float, test: float, seed: int,
                  class_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Disjoint, sorted index arrays ``train``/``validation``/``test``, each stratified by class."""
    counts = np.bincount(y)
    # Stratifying three ways needs each class in every split.
    smallest = int(counts[counts > 0].min())
    needed = 3
    if smallest < needed:
        small = [str(class_names[i] if class_names else i) for i, c in enumerate(counts) if 0 < c < needed]
        raise DataError(f"class(es) {', '.join(small)} have fewer than {needed} images; a stratified "
                        "train/validation/test split needs at least one per split. Add images or remove the class")
    indices = np.arange(len(y))
    n_classes = int((counts > 0).sum())
    n_test = max(int(round(test * len(y))), n_classes)
    n_val = max(int(round(validation * len(y))), n_classes)
    if len(y) - n_test - n_val < n_classes:
        raise DataError(f"{len(y)} images are too few to split into train/validation/test with {n_classes} classes")
    try:
        rest, test_idx = stratified_train_test_split(indices, y, test_size=n_test, seed=seed)
        train_idx, val_idx = stratified_train_test_split(rest, y[rest], test_size=n_val, seed=seed)
    except ValueError as error:
        raise DataError(f"cannot split the data stratified by class: {error}") from None
    return {"train": np.sort(train_idx), "validation": np.sort(val_idx), "test": np.sort(test_idx)}
