"""``precision``: auto picks mixed_float16 only where every GPU has tensor cores; every family trains under it.

A CPU runs float16 too (slowly), so the mixed-precision models are built and trained here for real;
only the GPU list ``auto`` reads is replaced.
"""

from __future__ import annotations

import keras
import keras_tuner
import numpy as np
import pytest

from pipeline.config import ARCHITECTURES, parse_params
from pipeline.errors import ConfigError
from pipeline.model import CNNHyperModel
from pipeline.model import precision as precision_module
from pipeline.model.precision import dtype_policy, policy_for_devices, resolve_precision
from pipeline.tuning.identity import search_hash
from tests.test_model_build import separable_task, tiny_space


@pytest.mark.parametrize(("capabilities", "policy"), [
    ((), "float32"),  # a CPU-only machine
    (((7, 0),), "mixed_float16"),  # Volta: the first tensor cores
    (((9, 0),), "mixed_float16"),  # Hopper
    (((6, 1),), "float32"),  # Pascal: float16 is no faster
    (((8, 0), (6, 1)), "float32"),  # one old GPU among new ones: the slowest sets the pace
    ((None,), "float32"),  # a device that does not say
])
def test_auto_is_mixed_only_where_every_gpu_has_tensor_cores(capabilities, policy: str, monkeypatch) -> None:
    assert policy_for_devices(capabilities) == policy
    monkeypatch.setattr(precision_module, "_visible_gpu_capabilities", lambda: capabilities)
    assert resolve_precision("auto") == policy
    assert resolve_precision("float32") == "float32"  # an explicit choice is taken as given
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"


def test_a_precision_outside_the_allowed_values_fails_validation() -> None:
    assert parse_params({}).precision == "auto"
    with pytest.raises(ConfigError) as error:
        parse_params({"precision": "fp16"})
    assert "precision" in str(error.value) and "mixed_float16" in str(error.value)
    with pytest.raises(ValueError, match="allowed: auto, float32"):
        resolve_precision("fp16")


def test_the_policy_applies_inside_the_scope_only() -> None:
    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_float16"):
        assert keras.layers.Dense(2).dtype_policy.name == "mixed_float16"
    assert keras.config.dtype_policy().name == before == "float32"
    assert keras.layers.Dense(2).dtype_policy.name == "float32"


def test_the_default_precision_leaves_the_search_name_unchanged_an_explicit_one_changes_it() -> None:
    base = search_hash(parse_params({}), "fp")
    assert search_hash(parse_params({"precision": "auto"}), "fp") == base
    assert search_hash(parse_params({"precision": "mixed_float16"}), "fp") != base
    assert search_hash(parse_params({"precision": "float32"}), "fp") != search_hash(
        parse_params({"precision": "mixed_float16"}), "fp")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_family_learns_in_mixed_float16_with_a_float32_softmax(architecture: str, tmp_path) -> None:
    """float16 compute, float32 weights and softmax, the loss scaled (Keras wraps the fused optimizer):
    the model learns the separable task (chance: 1/3) and saves and loads with float32 outputs."""
    space = tiny_space(architecture=architecture, blocks=2, filters=8, dense_units=16, batch_norm=True,
                       dropout=0.25, regularizer="l2", optimizer="adamw", learning_rate=0.03,
                       lr_schedule="warmup_cosine", batch_size=8)
    epochs = 6
    hypermodel = CNNHyperModel(space, (8, 8, 1), 3, seed=0, total_epochs=epochs, precision="mixed_float16")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    conv = next(layer for layer in model.layers if "conv" in layer.name)
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32" and model.output.dtype == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    train, validation = separable_task(192, seed=1), separable_task(96, seed=2)
    history = hypermodel.fit(hp, model, *train, validation_data=validation, epochs=epochs).history
    assert all(np.isfinite(history[k]).all() for k in ("loss", "val_loss"))
    assert history["val_accuracy"][-1] >= 0.6, history["val_accuracy"]
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    predicted = loaded.predict(validation[0][:4], verbose=0)
    assert predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, model.predict(validation[0][:4], verbose=0), rtol=1e-6)


def test_float32_models_are_what_they_were() -> None:
    """The hypermodel's default is float32 in every layer, the softmax included, and building with
    ``precision="float32"`` named is the same model (weights and outputs). Bitwise equality with the code
    before ``precision`` existed was checked once across commits (7fdb040 vs 81cf679), not here."""
    space = tiny_space(architecture="vgg", batch_norm=True)
    x = separable_task(8, seed=3)[0]
    default = CNNHyperModel(space, (8, 8, 1), 3, seed=5).build(keras_tuner.HyperParameters())
    explicit = CNNHyperModel(space, (8, 8, 1), 3, seed=5, precision="float32").build(keras_tuner.HyperParameters())
    assert all(layer.dtype_policy.name == "float32" for layer in explicit.layers)
    for a, b in zip(default.get_weights(), explicit.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(default.predict(x, verbose=0), explicit.predict(x, verbose=0))


def test_a_mixed_precision_trial_continues_from_its_saved_state(tmp_path) -> None:
    """Hyperband's continuation under mixed_float16: the loss scale and the inner optimizer's moments come back."""
    from pipeline.model.training import load_training_state, save_training_state

    space = tiny_space(architecture="vgg", batch_norm=True, optimizer="adam")
    hypermodel = CNNHyperModel(space, (8, 8, 1), 3, seed=0, total_epochs=2, precision="mixed_float16")
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    hypermodel.fit(hp, model, *separable_task(48, seed=1), epochs=1)
    save_training_state(model, tmp_path / "state.weights.h5")
    again = hypermodel.build(hp)
    load_training_state(again, tmp_path / "state.weights.h5")
    saved = {v.path: np.array(v) for v in model.optimizer.variables}
    loaded = {v.path: np.array(v) for v in again.optimizer.variables}
    assert len(saved) == len(loaded) and any("scale" in path for path in saved)
    for (path, value), other in zip(saved.items(), loaded.values(), strict=True):
        np.testing.assert_array_equal(value, other, err_msg=path)
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
