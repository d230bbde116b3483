"""Data fidelity: Hyperband's low rungs train on nested subsamples, and a continued trial is faithful."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import SearchSpaceConfig, parse_params
from pipeline.model import hypermodel as hypermodel_module
from pipeline.model.hypermodel import CNNHyperModel, hypermodel_from_meta, resolve_fidelity
from pipeline.model.training import subsample_rows

# Two searched keys: enough distinct trials for a bracket to continue one of them.
SPACE = SearchSpaceConfig.model_validate({
    "architecture": "plain", "blocks": 1, "filters": 4, "kernel_size": 3, "head": "gap", "dense_units": 0,
    "init": "he_normal", "regularizer": "none", "reg_strength": 1e-4, "dropout": 0.0, "batch_norm": False,
    "optimizer": {"choices": ["adam", "sgd"]}, "weight_decay": 1e-4,
    "learning_rate": {"min": 1e-3, "max": 1e-1, "sampling": "log"}, "lr_schedule": "constant", "batch_size": 16,
})


def test_subsamples_are_nested_deterministic_and_sized_by_budget() -> None:
    small, medium, full = (subsample_rows(900, b, 9, seed=4, minimum=16) for b in (1, 3, 9))
    assert (len(small), len(medium), len(full)) == (100, 300, 900)
    assert set(small) <= set(medium) <= set(full) and np.array_equal(full, np.arange(900))
    assert np.array_equal(small, subsample_rows(900, 1, 9, seed=4, minimum=16))  # a pure function
    assert not np.array_equal(small, subsample_rows(900, 1, 9, seed=5, minimum=16))
    assert len(subsample_rows(50, 1, 9, seed=4, minimum=16)) == 16  # never below one batch


def test_fidelity_choice() -> None:
    assert resolve_fidelity("auto", 60_000) == "data" and resolve_fidelity("auto", 1_200) == "epochs"
    assert resolve_fidelity("epochs", 60_000) == "epochs"
    with pytest.raises(ValueError, match="allowed"):
        resolve_fidelity("pixels", 10)
    meta = {"input_shape": [8, 8, 1], "num_classes": 10, "sizes": {"train": 50_000}}
    assert hypermodel_from_meta(SPACE, meta, seed=0, total_epochs=9, fidelity="auto").fidelity == "data"
    model = CNNHyperModel(SPACE, (8, 8, 1), 10, total_epochs=9, fidelity="data")
    assert model.fidelity_rows(900, 9, 16) is None and model.fidelity_rows(900, 3, 16) is not None
    assert CNNHyperModel(SPACE, (8, 8, 1), 10, total_epochs=9).fidelity_rows(900, 1, 16) is None


@pytest.mark.slow
def test_a_continued_trial_starts_from_its_parent_and_sees_more_of_the_same_data(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    from pipeline.tuning.tuners import make_tuner

    n = 180
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    x[:, 0, 0, 0] = np.arange(n)  # pixel (0, 0) names the row: what a fit trained on can be read back
    y = (np.arange(n) % 10).astype(np.int32)
    x_val, y_val = rng.normal(size=(40, 8, 8, 1)).astype(np.float32), (np.arange(40) % 10).astype(np.int32)

    fits: list[dict[str, Any]] = []
    real_fit_model = hypermodel_module.fit_model

    def recording_fit_model(model: Any, values: dict, xs: np.ndarray, ys: np.ndarray, **kwargs: Any) -> Any:
        fits.append({"config": (values["optimizer"], values["learning_rate"]), "rows": xs[:, 0, 0, 0].astype(int),
                     "initial_epoch": kwargs["initial_epoch"], "epochs": kwargs["epochs"],
                     "start": [w.copy() for w in model.get_weights()]})
        history = real_fit_model(model, values, xs, ys, **kwargs)
        fits[-1]["end"] = [w.copy() for w in model.get_weights()]
        return history

    monkeypatch.setattr(hypermodel_module, "fit_model", recording_fit_model)
    params = parse_params({"seed": 0, "tune": {"tuner": "hyperband", "max_epochs": 3, "factor": 3,
                                               "initial_points": [], "directory": str(tmp_path), "resume": False}})
    hypermodel = CNNHyperModel(SPACE, (8, 8, 1), 10, seed=0, total_epochs=3, fidelity="data")
    tuner = make_tuner(params.tune, hypermodel, seed=0, project_name="fidelity")
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=3, verbose=0)

    first_rung = [f for f in fits if f["epochs"] == 1]
    continued = [f for f in fits if f["initial_epoch"] == 1]
    assert first_rung and continued  # the bracket ran low rungs and continued a trial
    for fit in first_rung:
        assert len(fit["rows"]) == 60 and np.array_equal(np.sort(fit["rows"]), subsample_rows(n, 1, 3, seed=0))
    for child in continued:
        parent = next(f for f in first_rung if f["config"] == child["config"])
        assert child["epochs"] == 3 and len(child["rows"]) == n  # the last rung: all the data
        assert set(parent["rows"]) < set(child["rows"])  # more data, containing what the parent saw
        for start, end in zip(child["start"], parent["end"], strict=True):
            np.testing.assert_array_equal(start, end)  # from the parent's weights, not from scratch
    fresh = [f for f in fits if f["initial_epoch"] == 0 and f["epochs"] == 3]
    assert all(len(f["rows"]) == n for f in fresh)  # a full-budget bracket trains on everything


def test_tune_fidelity_reaches_the_search_and_defines_it() -> None:
    from pipeline.config import parse_params
    from pipeline.errors import ConfigError
    from pipeline.tuning.identity import search_hash
    from pipeline.tuning.session import hypermodel_for

    meta = {"input_shape": [8, 8, 1], "num_classes": 10, "sizes": {"train": 900}}
    data = parse_params({"tune": {"fidelity": "data"}})
    assert hypermodel_for(data, meta).fidelity == "data"
    assert hypermodel_for(parse_params({}), meta).fidelity == "epochs"  # the shipped default
    assert hypermodel_for(parse_params({"tune": {"fidelity": "auto"}}), meta).fidelity == "epochs"  # 900 images
    # a trial at a third of the epochs means something else under data fidelity: another search
    assert search_hash(data, "fp") != search_hash(parse_params({}), "fp")
    with pytest.raises(ConfigError) as caught:
        parse_params({"tune": {"fidelity": "pixels"}})
    assert "tune.fidelity" in str(caught.value)


def test_under_data_fidelity_the_default_tuner_runs_the_recipe_one_rung_below_the_full_budget(tmp_path: Path) -> None:
    """On 60,000 images the recipe's 9 full epochs took the whole 30-minute budget (issue 25): under data
    fidelity it runs 3 of 9 epochs on a third of the data, and the search gain compares it there."""
    from pipeline.tuning.session import hypermodel_for
    from pipeline.tuning.tuners import make_tuner

    meta = {"input_shape": [8, 8, 1], "num_classes": 10, "sizes": {"train": 900}}
    for fidelity, epochs in (("data", 3), ("epochs", 9)):
        params = parse_params({"search_space": SPACE.model_dump(), "tune": {
            "fidelity": fidelity, "max_epochs": 9, "factor": 3, "directory": str(tmp_path / fidelity),
            "initial_points": [{"optimizer": "adam", "learning_rate": 0.01}]}})
        tuner = make_tuner(params.tune, hypermodel_for(params, meta), seed=0, project_name="s")
        assert tuner.oracle.initial_epochs == epochs and tuner.oracle.initial_points
        trial = tuner.oracle.create_trial("tuner0")
        assert (trial.hyperparameters.values["tuner/epochs"], trial.hyperparameters.values["tuner/bracket"]) == (
            epochs, -1)
