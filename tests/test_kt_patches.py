"""KerasTuner's state files are replaced whole, and a torn one is one clear line, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from pipeline.tuning import kt_state


def build(hp: kt.HyperParameters) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Choice("units", [2, 3])),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def search(directory: Path, overwrite: bool = True) -> kt.RandomSearch:
    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=1, directory=str(directory),
                            project_name="p", overwrite=overwrite, seed=0)
    x, y = np.random.default_rng(0).normal(size=(16, 4)), np.arange(16) % 2
    tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    return tuner


def test_a_torn_oracle_file_is_one_line_naming_it(tmp_path: Path) -> None:
    kt_state.install()
    search(tmp_path)
    oracle = tmp_path / "p" / "oracle.json"
    text = oracle.read_text()
    oracle.write_text(text[: len(text) // 2])  # a write cut off by a kill, as an older version could leave it
    with pytest.raises(kt_state.TornStateError) as caught:
        search(tmp_path, overwrite=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{oracle}: the search's state file is cut off")


def test_state_writes_leave_the_old_file_whole_when_they_fail(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kt_state.install()
    from keras_tuner.src import utils

    path = tmp_path / "oracle.json"
    utils.save_json(str(path), {"round": 1})

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        utils.save_json(str(path), {"round": 2, "padding": "x" * 10_000})
    assert utils.load_json(str(path)) == {"round": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.json"]  # no temporary left behind
