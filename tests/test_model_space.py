"""The search space as KerasTuner hyperparameters: every key, every trial, no conditions."""

from __future__ import annotations

import json

import keras_tuner
import pytest

from pipeline.config import SearchSpaceConfig, load_params
from pipeline.model import declare_hyperparameters, hyperparameters_from_values
from pipeline.model.space import space_items

KEYS = list(SearchSpaceConfig.model_fields)


@pytest.fixture(scope="module")
def default_space() -> SearchSpaceConfig:
    return load_params().search_space


def test_every_key_is_registered_unconditionally(default_space: SearchSpaceConfig) -> None:
    hp = keras_tuner.HyperParameters()
    values = declare_hyperparameters(default_space, hp)
    assert list(values) == KEYS
    assert sorted(h.name for h in hp.space) == sorted(KEYS)
    assert all(not h.conditions for h in hp.space)
    assert values == {name: hp.get(name) for name in KEYS}


def test_kinds_map_to_keras_tuner_types() -> None:
    space = SearchSpaceConfig(
        activation="elu", filters={"choices": [8, 16]}, blocks={"min": 1, "max": 4},
        learning_rate={"min": 1e-4, "max": 1e-1, "sampling": "log"}, dropout={"min": 0.0, "max": 0.5, "step": 0.25},
        batch_norm={"choices": [True, False]}, head={"choices": ["flatten"]},
    )
    hp = keras_tuner.HyperParameters()
    values = declare_hyperparameters(space, hp)
    by_name = {h.name: h for h in hp.space}
    assert isinstance(by_name["activation"], keras_tuner.engine.hyperparameters.Fixed)
    assert values["activation"] == "elu"
    assert isinstance(by_name["filters"], keras_tuner.engine.hyperparameters.Choice)
    assert list(by_name["filters"].values) == [8, 16]
    assert isinstance(by_name["blocks"], keras_tuner.engine.hyperparameters.Int)
    assert (by_name["blocks"].min_value, by_name["blocks"].max_value) == (1, 4)
    lr = by_name["learning_rate"]
    assert isinstance(lr, keras_tuner.engine.hyperparameters.Float) and lr.sampling == "log"
    assert by_name["dropout"].step == 0.25
    assert values["batch_norm"] is True  # a bool, not KerasTuner's 1
    assert values["head"] == "flatten"


def test_sampled_trials_carry_the_same_keys(default_space: SearchSpaceConfig) -> None:
    hp = keras_tuner.HyperParameters()
    declare_hyperparameters(default_space, hp)
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=5, seed=3,
                                                    hyperparameters=hp)
    oracle._set_project_dir("/tmp/unused", "unused")
    seen = []
    for i in range(5):
        sampled = oracle.populate_space(f"t{i}")["values"]
        seen.append(sampled)
        assert set(sampled) == set(KEYS)
    assert len({json.dumps(v, sort_keys=True) for v in seen}) > 1


def test_values_round_trip_through_json(default_space: SearchSpaceConfig) -> None:
    hp = keras_tuner.HyperParameters()
    values = declare_hyperparameters(default_space, hp)
    values.update(architecture="resnet", dropout=0.0, batch_norm=False, learning_rate=0.01, blocks=2)
    stored = json.loads(json.dumps({**values, "tuner/epochs": 9, "tuner/trial_id": "0003"}))
    rebuilt = hyperparameters_from_values(default_space, stored)
    assert rebuilt.values == values
    assert "tuner/epochs" not in rebuilt.values
    assert isinstance(rebuilt.get("dropout"), float) and rebuilt.get("batch_norm") is False


def test_missing_searched_value_is_an_error(default_space: SearchSpaceConfig) -> None:
    values = declare_hyperparameters(default_space, keras_tuner.HyperParameters())
    del values["optimizer"]
    with pytest.raises(ValueError, match="optimizer"):
        hyperparameters_from_values(default_space, values)
    fixed = [name for name, spec in space_items(default_space) if not spec.searched]
    partial = {k: v for k, v in declare_hyperparameters(default_space, keras_tuner.HyperParameters()).items()
               if k not in fixed}
    assert set(hyperparameters_from_values(default_space, partial).values) == set(KEYS)
