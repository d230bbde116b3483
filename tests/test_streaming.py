"""The streaming input path: memory-mapped splits train exactly as in-memory ones, batch for batch."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.config import SearchSpaceConfig
from pipeline.data import store
from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
from pipeline.model.training import (
    VALIDATION_BATCH_SIZE,
    epoch_batches,
    evaluation_batches,
    fit_model,
    is_streamed,
    sequential_batches,
)

# Dropout, batch norm and Adam: a model whose weights show any difference in what it was fed.
SPACE = SearchSpaceConfig.model_validate({
    "architecture": "vgg", "blocks": 1, "filters": 4, "kernel_size": 3, "head": "gap", "dense_units": 0,
    "init": "he_normal", "regularizer": "none", "reg_strength": 1e-4, "dropout": 0.25, "batch_norm": True,
    "optimizer": "adam", "weight_decay": 1e-4,
    "learning_rate": 0.01, "lr_schedule": "cosine", "batch_size": 16,
})


@pytest.fixture()
def processed(tmp_path: Path) -> Path:
    """A tiny processed-data folder: 70 training and 30 validation images of 8x8, 10 classes."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 70), ("validation", 30)):
        store.save_split(tmp_path, split, rng.normal(size=(n, 8, 8, 1)).astype(np.float32),
                         rng.integers(0, 10, n))
    return tmp_path


def test_load_split_maps_big_splits_and_loads_small_ones(processed: Path, monkeypatch) -> None:
    x, y = store.load_split(processed, "train")
    assert not is_streamed(x) and not is_streamed(y)  # 70 tiny images: in memory by default
    mapped, labels = store.load_split(processed, "train", mmap=True)
    assert is_streamed(mapped) and not mapped.flags.writeable and np.array_equal(mapped, x)
    assert np.array_equal(labels, y)
    monkeypatch.setattr(store, "STREAM_ABOVE_BYTES", x.nbytes - 1)  # now "big": mapped by default
    assert is_streamed(store.load_split(processed, "train")[0])
    assert not is_streamed(store.load_split(processed, "train", mmap=False)[0])


def test_streamed_batches_equal_in_memory_batches(processed: Path) -> None:
    x, y = store.load_split(processed, "train", mmap=False)
    xm, ym = store.load_split(processed, "train", mmap=True)
    memory = list(epoch_batches(x, y, 16, seed=5, initial_epoch=1, epochs=3).as_numpy_iterator())
    streamed = list(epoch_batches(xm, ym, 16, seed=5, initial_epoch=1, epochs=3).as_numpy_iterator())
    assert len(memory) == len(streamed) == 2 * 5  # 70 images / 16 -> 5 batches (the last short), 2 epochs
    for (a, b), (c, d) in zip(memory, streamed, strict=True):
        assert np.array_equal(a, c) and np.array_equal(b, d)
    # a different seed orders the epoch differently: the comparison above could have failed
    other = list(epoch_batches(x, y, 16, seed=6, initial_epoch=1, epochs=2).as_numpy_iterator())
    assert not np.array_equal(other[0][1], memory[0][1])


def _train(x: np.ndarray, y: np.ndarray, validation: tuple[np.ndarray, np.ndarray]) -> tuple[list, dict]:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    hypermodel = CNNHyperModel(space=SPACE, input_shape=(8, 8, 1), num_classes=10, seed=3, total_epochs=2)
    hp = hyperparameters_from_values(SPACE, {})
    model = hypermodel.build(hp)
    history = fit_model(model, dict(hp.values), x, y, validation_data=validation, epochs=2, seed=3)
    return model.get_weights(), history.history


def test_streamed_training_equals_in_memory_training(processed: Path) -> None:
    memory_weights, memory_history = _train(*store.load_split(processed, "train", mmap=False),
                                            store.load_split(processed, "validation", mmap=False))
    stream_weights, stream_history = _train(*store.load_split(processed, "train", mmap=True),
                                            store.load_split(processed, "validation", mmap=True))
    for a, b in zip(memory_weights, stream_weights, strict=True):
        np.testing.assert_array_equal(a, b)
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(stream_history[metric]) == 2
        np.testing.assert_allclose(stream_history[metric], memory_history[metric], rtol=1e-6, err_msg=metric)


@pytest.mark.parametrize(("n", "batch_size"), [(70, 16), (64, 16), (600, 32)])
def test_batches_are_each_epochs_order_cut_into_sorted_batches(n: int, batch_size: int) -> None:
    """Read in chunks of several batches (one Python step each), the batches are still exactly these."""
    from pipeline.model.training import epoch_order

    x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    y = np.arange(n, dtype=np.int32)
    got = [b for _, b in epoch_batches(x, y, batch_size, seed=2, initial_epoch=3, epochs=5).as_numpy_iterator()]
    expected = [np.sort(epoch_order(n, 2, epoch)[start:start + batch_size])
                for epoch in (3, 4) for start in range(0, n, batch_size)]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_every_input_pipeline_runs_without_tf_data_autotuning(processed: Path) -> None:
    """Autotuning's model thread made deleting a fit's iterator wait up to seconds (``without_autotune``)."""
    x, y = store.load_split(processed, "train", mmap=False)
    x_val, y_val = store.load_split(processed, "validation", mmap=False)
    xm, ym = store.load_split(processed, "validation", mmap=True)
    pipelines = {"epoch_batches": epoch_batches(x, y, 16, seed=0, initial_epoch=0, epochs=2),
                 "sequential_batches": sequential_batches(xm, ym, 8),
                 "evaluation_batches in memory": evaluation_batches(x_val, y_val),
                 "evaluation_batches mapped": evaluation_batches(xm, ym)}
    for name, dataset in pipelines.items():
        assert dataset.options().autotune.enabled is False, name


def test_in_memory_evaluation_batches_score_as_keras_scores_the_arrays(processed: Path) -> None:
    """fit_model hands Keras its validation arrays as batches of its own: the scores must not change."""
    x_val, y_val = store.load_split(processed, "validation", mmap=False)
    keras.utils.set_random_seed(0)
    model = CNNHyperModel(space=SPACE, input_shape=(8, 8, 1), num_classes=10, seed=3,
                          total_epochs=2).build(hyperparameters_from_values(SPACE, {}))
    batches = list(evaluation_batches(x_val, y_val).as_numpy_iterator())
    assert [len(b) for _, b in batches] == [len(y_val)]  # 30 images: one batch of VALIDATION_BATCH_SIZE or fewer
    np.testing.assert_array_equal(np.concatenate([a for a, _ in batches]), x_val)
    via_arrays = model.evaluate(x_val, y_val, batch_size=VALIDATION_BATCH_SIZE, verbose=0)
    via_batches = model.evaluate(evaluation_batches(x_val, y_val), verbose=0)
    np.testing.assert_allclose(via_batches, via_arrays, rtol=1e-6)
