"""The one training loop: faithful continuation, augmentation only while training, final-model fallback."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from pipeline.config import SearchSpaceConfig
from pipeline.data.sources import load_source
from pipeline.model.final import RETRAINED, TRIAL_CHECKPOINT, TRIAL_CHECKPOINT_NAME, train_member
from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
from pipeline.model.training import epoch_order, fit_model, load_training_state, save_training_state
from pipeline.objective import noise_allowance

# Dropout, batch norm, augmentation and Adam: every piece of state a continuation must carry.
SPACE = SearchSpaceConfig.model_validate({
    "architecture": "vgg", "blocks": 1, "filters": 8, "kernel_size": 3, "head": "gap", "dense_units": 16,
    "init": "he_normal", "regularizer": "l2", "reg_strength": 1e-4, "dropout": 0.25, "batch_norm": True,
    "optimizer": "adam", "learning_rate": 0.01, "lr_schedule": "cosine", "batch_size": 32, "weight_decay": 1e-4,
    "augment_translate": 0.125, "augment_rotate": 10.0,
})


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from pipeline.config import DataConfig

    raw = load_source(DataConfig(source="digits"))
    x = ((raw.x - 8.0) / 8.0).astype(np.float32)
    y = raw.y.astype(np.int32)
    return x[:200], y[:200], x[200:300], y[200:300]


def build(total_epochs: int, space: SearchSpaceConfig = SPACE, seed: int = 3) -> tuple[keras.Model, dict]:
    hypermodel = CNNHyperModel(space=space, input_shape=(8, 8, 1), num_classes=10, seed=seed,
                               total_epochs=total_epochs)
    hp = hyperparameters_from_values(space, {})
    return hypermodel.build(hp), dict(hp.values)


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    assert np.array_equal(epoch_order(50, 1, 4), epoch_order(50, 1, 4))
    assert not np.array_equal(epoch_order(50, 1, 4), epoch_order(50, 1, 5))
    assert sorted(epoch_order(50, 1, 4)) == list(range(50))


def test_three_epochs_then_six_more_equal_nine_straight(digits, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits
    keras.utils.set_random_seed(0)
    straight, values = build(9)
    history = fit_model(straight, values, x, y, validation_data=(x_val, y_val), epochs=9, seed=3, total_epochs=9)

    keras.utils.set_random_seed(0)
    first, _ = build(9)
    part1 = fit_model(first, values, x, y, validation_data=(x_val, y_val), epochs=3, seed=3, total_epochs=9)
    save_training_state(first, tmp_path / "last.weights.h5")
    keras.backend.clear_session()
    keras.utils.set_random_seed(123)  # the continuation must not depend on the global RNG
    second, _ = build(9)
    load_training_state(second, tmp_path / "last.weights.h5")
    assert int(second.optimizer.iterations.numpy()) == 3 * 7  # 200 samples / 32 -> 7 steps per epoch
    part2 = fit_model(second, values, x, y, validation_data=(x_val, y_val), epochs=9, initial_epoch=3, seed=3,
                      total_epochs=9)

    for metric in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        np.testing.assert_allclose(part1.history[metric] + part2.history[metric], history.history[metric],
                                   rtol=1e-4, atol=1e-5, err_msg=metric)
    for a, b in zip(straight.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_augmentation_acts_in_fit_only(digits) -> None:
    x, *_ = digits
    model, _ = build(3)
    augment = [layer for layer in model.layers if layer.name.startswith(("random_translation", "random_rotation"))]
    assert len(augment) == 2
    batch = x[:16]
    for layer in augment:
        assert np.array_equal(np.asarray(layer(batch, training=False)), batch)
        assert not np.allclose(np.asarray(layer(batch, training=True)), batch)
    # predict (and evaluate) run with training=False: deterministic, as if there were no augmentation
    assert np.array_equal(model.predict(batch, verbose=0), model.predict(batch, verbose=0))
    plain = SearchSpaceConfig.model_validate({**SPACE.model_dump(mode="json"), "augment_translate": 0.0,
                                              "augment_rotate": 0.0})
    without, _ = build(3, plain)
    without.set_weights(model.get_weights())
    np.testing.assert_allclose(without.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


def test_a_retrained_model_short_of_the_search_falls_back_to_the_trial_checkpoint(digits, tmp_path: Path) -> None:
    x, y, x_val, y_val = digits
    values = build(9)[1]
    trial_model, _ = build(9)
    fit_model(trial_model, values, x, y, validation_data=(x_val, y_val), epochs=9, seed=3)
    trial_dir = tmp_path / "trial_0007"
    save_training_state(trial_model, trial_dir / TRIAL_CHECKPOINT_NAME)
    trial_score = float(trial_model.evaluate(x_val, y_val, verbose=0)[1])

    def builder(v: dict, seed: int) -> keras.Model:
        return build(1, seed=seed)[0]

    candidate = {"trial_id": "0007", "score": trial_score, "values": values, "trial_dir": str(trial_dir)}
    # one epoch cannot reach what nine did: the member keeps the trial's own model
    short = train_member(0, candidate, builder, (x, y, x_val, y_val), epochs=1, patience=None,
                         objective="val_accuracy", seed=3, tolerance=0.01)
    assert short.shortfall > 0.01 and short.source == TRIAL_CHECKPOINT
    assert short.score == pytest.approx(trial_score)
    # a search score the retrained model reaches: nothing to fall back on
    reached = train_member(0, {**candidate, "score": 0.0}, builder, (x, y, x_val, y_val), epochs=1, patience=None,
                           objective="val_accuracy", seed=3, tolerance=0.01)
    assert reached.shortfall == 0.0 and reached.source == RETRAINED
    assert json.dumps(reached.summary())  # what run.json stores
    # short of the search by less than 100 validation images can tell apart: the retrained model stays
    near = train_member(0, {**candidate, "score": reached.retrained_score + 0.03}, builder, (x, y, x_val, y_val),
                        epochs=1, patience=None, objective="val_accuracy", seed=3, tolerance=0.01)
    assert near.shortfall == pytest.approx(0.03) and near.tolerance > 0.03
    assert near.source == RETRAINED and not near.fell_short()
    assert near.summary()["tolerance"] == pytest.approx(noise_allowance(near.search_score, 100, "val_accuracy"),
                                                        abs=1e-6)


def test_the_noise_allowance_is_two_standard_errors_of_a_validation_accuracy() -> None:
    assert noise_allowance(0.5, 180, "val_accuracy") == pytest.approx(2 * (0.25 / 180) ** 0.5)
    assert 0.0 < noise_allowance(1.0, 180, "val_accuracy") < 0.02  # a perfect score still has some
    assert noise_allowance(0.99, 7500, "val_accuracy") < 0.01  # big validation sets: the configured 0.01 rules
    assert noise_allowance(0.9, 100, "val_accuracy") > noise_allowance(0.9, 400, "val_accuracy")
    assert noise_allowance(0.3, 180, "val_loss") == 0.0 and noise_allowance(0.9, 0, "val_accuracy") == 0.0


def test_the_final_average_leaves_out_a_member_far_below_the_best(digits) -> None:
    from pipeline.model.final import train_final

    x, y, x_val, y_val = digits
    values = build(4)[1]
    good = {"trial_id": "1", "score": 0.0, "values": {**values, "learning_rate": 0.01}}
    weak = {"trial_id": "2", "score": 0.0, "values": {**values, "learning_rate": 1e-6}}

    def builder(v: dict, seed: int) -> keras.Model:
        space = SearchSpaceConfig.model_validate({**SPACE.model_dump(mode="json"), "learning_rate": v["learning_rate"]})
        return build(4, space, seed=seed)[0]

    final = train_final([good, weak], builder, (x, y, x_val, y_val), epochs=4, patience=None,
                        objective="val_accuracy", seed=3, tolerance=1.0, margin=0.01)
    assert [m.in_ensemble for m in final.members] == [True, False]
    # the margin applied: 100 validation images cannot tell 0.01 apart, so their noise at the best score
    assert final.margin == pytest.approx(noise_allowance(final.members[0].score, 100, "val_accuracy"))
    assert final.margin > 0.01
    assert final.score == pytest.approx(final.members[0].score)  # the average of one: the good member
    both = train_final([good, weak], builder, (x, y, x_val, y_val), epochs=4, patience=None,
                       objective="val_accuracy", seed=3, tolerance=1.0, margin=1.0)
    assert all(m.in_ensemble for m in both.members) and both.model.name == "ensemble_of_2"
    assert final.model is final.members[0].model  # one member left: the model is that member itself
