"""The numpy stratified split is scikit-learn's ``train_test_split(stratify=...)``, index for index."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from pipeline.data.stratified import stratified_train_test_split


@pytest.mark.parametrize("case", range(40))
def test_same_indices_as_scikit_learn(case: int) -> None:
    rng = np.random.default_rng(case)
    classes = int(rng.integers(2, 12))
    # uneven classes (ties and remainders both happen), at least 3 members each
    y = np.concatenate([np.full(int(rng.integers(3, 60)), c) for c in range(classes)])
    y = rng.permutation(y)
    indices = np.arange(len(y)) * 3 + 7  # not 0..n-1: the result must index ``indices``, not positions
    seed = int(rng.integers(0, 2**31 - 1))
    size = int(rng.integers(classes, len(y) - classes + 1))
    key = "train_size" if case % 2 else "test_size"
    expected = train_test_split(indices, stratify=y, random_state=seed, **{key: size})
    got = stratified_train_test_split(indices, y, seed=seed, **{key: size})
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("y", "size"), [([0, 0, 1], 1), ([0, 0, 1, 1, 2, 2], 2), ([0, 1, 0, 1], 4)])
def test_refuses_what_scikit_learn_refuses(y: list[int], size: int) -> None:
    with pytest.raises(ValueError):
        train_test_split(np.arange(len(y)), test_size=size, stratify=np.array(y), random_state=0)
    with pytest.raises(ValueError):
        stratified_train_test_split(np.arange(len(y)), np.array(y), test_size=size, seed=0)


def test_preprocess_stage_does_not_import_scikit_learn() -> None:
    """scikit-learn (and the pandas it pulls in) is ~150 MB of the stage's peak memory on a big folder."""
    code = ("import sys, pipeline.stages.preprocess, pipeline.data.sources; "
            "print(sorted(m for m in ('sklearn', 'pandas', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
