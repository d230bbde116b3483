"""KerasTuner's state files are replaced whole, a torn one is one clear line, and a handled failed trial
prints no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest

from pipeline.tuning import kt_overrides


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
    kt_overrides.install()
    search(tmp_path)
    oracle = tmp_path / "p" / "oracle.json"
    text = oracle.read_text()
    oracle.write_text(text[: len(text) // 2])  # a write cut off by a kill, as an older version could leave it
    with pytest.raises(kt_overrides.TornStateError) as caught:
        search(tmp_path, overwrite=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{oracle}: the search's state file is cut off")


def test_state_writes_leave_the_old_file_whole_when_they_fail(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    kt_overrides.install()
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


class FailingBuild:
    """Builds once (KerasTuner's look at the search space), then fails every trial."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, hp: kt.HyperParameters) -> keras.Model:
        self.calls += 1
        if self.calls == 1:
            return build(hp)
        raise kt.errors.FailedTrialError("this configuration cannot be built")


def test_a_failed_trial_prints_no_traceback_unless_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = np.zeros((4, 4)), np.arange(4) % 2
    for tracebacks, expected in ((False, False), (True, True)):
        kt_overrides.install(tracebacks=tracebacks)
        tuner = kt.RandomSearch(FailingBuild(), objective="val_accuracy", max_trials=1, directory=str(tmp_path),
                                project_name=f"p{tracebacks}", seed=0, max_consecutive_failed_trials=1)
        with pytest.raises(RuntimeError):  # KerasTuner: too many failed trials
            tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
        trial = next(iter(tuner.oracle.trials.values()))
        assert trial.status == "FAILED" and "cannot be built" in trial.message
        assert ("Traceback" in capsys.readouterr().err) is expected
    kt_overrides.install()
