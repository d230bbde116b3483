"""A real KerasTuner Hyperband search over the shipped default space: no trial may fail."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_hyperband_over_default_space_has_no_failed_trial(tmp_path) -> None:
    import keras_tuner
    from sklearn.datasets import load_digits

    from pipeline.config import load_params
    from pipeline.model import CNNHyperModel

    params = load_params()
    digits = load_digits()
    x = (digits.images[:300] / 16.0).astype("float32")[..., None]
    y = digits.target[:300]
    max_epochs = 3
    hypermodel = CNNHyperModel(params.search_space, (8, 8, 1), 10, seed=params.seed, total_epochs=max_epochs)
    tuner = keras_tuner.Hyperband(hypermodel, objective="val_accuracy", max_epochs=max_epochs, factor=3,
                                  seed=params.seed, directory=tmp_path, project_name="hb", overwrite=True,
                                  max_consecutive_failed_trials=1)
    tuner.search(x[:200], y[:200], validation_data=(x[200:], y[200:]), verbose=0)

    trials = list(tuner.oracle.trials.values())
    assert len(trials) >= 3
    assert [t.trial_id for t in trials if t.status != "COMPLETED"] == []
    keys = set(type(params.search_space).model_fields)
    assert all(keys <= set(t.hyperparameters.values) for t in trials)
    # the best trial rebuilds and predicts outside the tuner
    best = tuner.get_best_models(1)[0]
    assert best.predict(x[:4], verbose=0).shape == (4, 10)
