"""The fixed-cost cuts of a trial change nothing it computes: the same training, the same checkpoints,
the same search."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch

from pipeline.model import training
from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
from pipeline.tuning import tuners
from pipeline.tuning.callbacks import DeferredBestEpoch
from pipeline.tuning.fixed_cost import fixed_cost_of
from tests.test_training_loop import SPACE  # dropout, batch norm, augmentation, Adam: all the state there is
from tests.tune_fixtures import hypermodel, tiny_data, tiny_params


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    return tiny_data(240)


def _fit(data: tuple[np.ndarray, ...], epochs: int, callbacks: list | None = None) -> tuple[keras.Model, dict]:
    x, y, x_val, y_val = data
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = CNNHyperModel(space=SPACE, input_shape=(8, 8, 1), num_classes=10, seed=3,
                          total_epochs=epochs).build(hyperparameters_from_values(SPACE, {}))
    values = hyperparameters_from_values(SPACE, {}).values
    history = training.fit_model(model, values, x, y, validation_data=(x_val, y_val), epochs=epochs, seed=3,
                                 callbacks=callbacks)
    return model, history.history


def _assert_same_weights(model: keras.Model, other: keras.Model) -> None:
    for a, b in zip(model.weights, other.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_building_the_training_state_first_changes_no_number(data, monkeypatch: pytest.MonkeyPatch) -> None:
    model, history = _fit(data, 3)
    monkeypatch.setattr(training, "build_training_state", lambda *args: None)  # Keras' own lazy build
    lazy_model, lazy_history = _fit(data, 3)
    assert history == lazy_history
    _assert_same_weights(model, lazy_model)


def test_one_graph_steps_change_no_number_and_trace_once(data, monkeypatch: pytest.MonkeyPatch) -> None:
    model, history = _fit(data, 3)
    # one tf.function per step, traced once for the whole fit (short last batches included)
    assert model.train_function.experimental_get_tracing_count() == 1
    assert model.test_function.experimental_get_tracing_count() == 1
    monkeypatch.setattr(training, "one_graph_steps", lambda model: None)  # Keras' own steps
    keras_model, keras_history = _fit(data, 3)
    assert not hasattr(keras_model.train_function, "experimental_get_tracing_count")  # Keras' wrapper, not ours
    assert history == keras_history
    _assert_same_weights(model, keras_model)


def test_one_graph_steps_leave_xla_eager_and_traced_steps_as_they_are() -> None:
    def compiled(**options: object) -> keras.Model:
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse", **options)
        return model

    for options in ({"jit_compile": True}, {"run_eagerly": True}, {"steps_per_execution": 2}):
        model = compiled(**options)
        training.one_graph_steps(model)
        assert model.train_function is None and model.test_function is None, options
    model = compiled(jit_compile=False)
    kept = model.train_function = object()  # a kept model's steps, traced in an earlier fit
    training.one_graph_steps(model)
    assert model.train_function is kept and model.test_function is not None


def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, item: out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                          else None)
    return out


@pytest.mark.parametrize("objective", ["val_accuracy", "val_loss"])
def test_the_deferred_checkpoint_holds_what_keras_tuner_would_have_written(data, tmp_path: Path,
                                                                           objective: str) -> None:
    goal = kt.Objective(objective, "max" if objective == "val_accuracy" else "min")
    keras_tuners = SaveBestEpoch(goal, str(tmp_path / "kt.weights.h5"))
    last = tmp_path / "last.weights.h5"
    deferred = DeferredBestEpoch(goal, str(tmp_path / "deferred.weights.h5"), last)
    _, history = _fit(data, 5, [keras_tuners, training.SaveTrainingState(last), deferred])
    expected, written = _h5_arrays(tmp_path / "kt.weights.h5"), _h5_arrays(tmp_path / "deferred.weights.h5")
    assert expected.keys() == written.keys() and expected
    for name in expected:
        np.testing.assert_array_equal(expected[name], written[name], err_msg=name)
    values = history[objective]
    best_is_last = (max if objective == "val_accuracy" else min)(values) == values[-1] and \
        values.index(values[-1]) == len(values) - 1
    assert best_is_last == (_h5_arrays(last).keys() == written.keys() and all(
        np.array_equal(_h5_arrays(last)[k], written[k]) for k in written))


def _search(tmp_path: Path, data: tuple[np.ndarray, ...]) -> list[dict[str, str]]:
    from pipeline.tuning.session import tune

    params = tiny_params(tmp_path)
    keras.backend.clear_session()
    tune(params, hypermodel(params), data, "fixed-cost-test", tracking_uri=None,
         hp_names=list(type(params.search_space).model_fields), out_dir=tmp_path / "out")
    with (tmp_path / "out" / "trials.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_search_scores_the_same_as_with_keras_tuners_own_setup(data, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    load = tuners.load_training_state
    monkeypatch.setattr(tuners, "load_training_state", lambda model, path: (loads.append(path), load(model, path)))
    released: list[int] = []
    release = tuners.TrialHeap.release
    monkeypatch.setattr(tuners.TrialHeap, "release", lambda heap: (released.append(1), release(heap)))
    rows = _search(tmp_path / "now", data)
    continued = [r for r in rows if r["continued_from"]]
    assert continued and not loads  # every continuation went on with its parent's model, in place
    assert len(released) == len(continued)  # each parent's model left the cache, to be freed with the next batch
    fixed = fixed_cost_of(tmp_path / "now" / "out" / "trials.csv")
    assert fixed["basis"] == "trial_seconds" and fixed["trials"] == len(rows)
    assert all(float(r["trial_seconds"]) >= float(r["seconds"]) for r in rows)
    checkpoints = sorted(p.parent.name for p in (tmp_path / "now" / ".tuner").rglob("checkpoint.weights.h5"))
    assert checkpoints == sorted(f"trial_{r['trial_id']}" for r in rows)

    # KerasTuner's own build (two collections, lazy variables), per-epoch checkpoint, and continuations
    # built anew from the parent's last state file
    monkeypatch.setattr(tuners, "KEPT_MODELS", 0)
    monkeypatch.setattr(tuners.TrackedTunerMixin, "_try_build", kt.Tuner._try_build)
    monkeypatch.setattr(tuners, "DeferredBestEpoch", lambda objective, filepath, last: SaveBestEpoch(objective,
                                                                                                      filepath))
    monkeypatch.setattr(training, "build_training_state", lambda *args: None)
    before = _search(tmp_path / "before", data)
    assert len(loads) == len(continued)
    keys = ("trial_id", "status", "score", "continued_from", "epochs_trained", "best_epoch", "val_accuracy", "loss",
            "val_loss", "accuracy")
    assert [{k: r[k] for k in keys} for r in rows] == [{k: r[k] for k in keys} for r in before]
    history = [(tmp_path / side / "out" / "history.csv").read_text() for side in ("now", "before")]
    assert history[0] == history[1]  # every epoch's metrics, continuations included
