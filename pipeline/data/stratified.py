"""scikit-learn's stratified ``train_test_split`` for integer sizes, in numpy alone, index for index.

Importing scikit-learn costs the preprocess stage about 150 MB of resident memory (it pulls
in pandas and pyarrow), more than the 28x28 images of MNIST take as float32. The split needs
only its few lines of numpy: these are those lines (``StratifiedShuffleSplit._iter_indices``
and ``utils.extmath._approximate_mode`` of scikit-learn 1.x), drawing from the same
``RandomState`` in the same order, so the indices, the processed arrays and their fingerprint
stay what they were. ``tests/test_stratified.py`` compares the two on many label sets and seeds.
"""

from __future__ import annotations

import numpy as np


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``n_draws`` to take from each class: proportional, ties broken at random."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def stratified_train_test_split(indices: np.ndarray, y: np.ndarray, *, seed: int, train_size: int | None = None,
                                test_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``train_test_split(indices, train_size=..., test_size=..., stratify=y, random_state=seed)``, one size given.

    Raises ``ValueError`` where scikit-learn does: a size out of range, a class with one member,
    fewer train or test items than classes.
    """
    n = len(indices)
    if (train_size is None) == (test_size is None):
        raise ValueError("give exactly one of train_size and test_size")
    size = int(train_size if train_size is not None else test_size)
    if not 0 < size < n:
        raise ValueError(f"{'train' if train_size is not None else 'test'}_size={size} should be between 1 and "
                         f"{n - 1} (the number of samples is {n})")
    n_train, n_test = (size, n - size) if train_size is not None else (n - size, size)
    classes, y_indices, class_counts = np.unique(np.asarray(y), return_inverse=True, return_counts=True)
    if np.min(class_counts) < 2:
        raise ValueError(f"The least populated classes in y have only 1 member, which is too few: "
                         f"{classes[class_counts < 2].tolist()}")
    if n_train < len(classes):
        raise ValueError(f"The train_size = {n_train} should be greater or equal to the number of classes = "
                         f"{len(classes)}")
    if n_test < len(classes):
        raise ValueError(f"The test_size = {n_test} should be greater or equal to the number of classes = "
                         f"{len(classes)}")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(members[:n_i[i]])
        test.extend(members[n_i[i]:n_i[i] + t_i[i]])
    return np.asarray(indices)[rng.permutation(train)], np.asarray(indices)[rng.permutation(test)]
