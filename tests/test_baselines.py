"""evaluate's scikit-learn baselines: fitted on the same split, skipped with a note when too large."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import baselines


def digits_split() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[..., None] / 16.0
    return x[:1200], d.target[:1200], x[1200:], d.target[1200:]


def test_baselines_score_the_test_split_and_the_margin_names_the_better_one() -> None:
    result = baselines.fit_baselines(*digits_split())
    assert set(result) == {"logistic_regression", "svc"}
    assert all(0.9 < r["test_accuracy"] <= 1.0 for r in result.values())
    summary = baselines.baseline_summary(result, cnn_accuracy=0.99)
    best = max(result, key=lambda k: result[k]["test_accuracy"])
    assert summary["best_baseline"] == best
    assert summary["baseline_margin"] == pytest.approx(0.99 - result[best]["test_accuracy"], abs=1e-6)
    # short keys for `dvc exp show`: {name: test accuracy}
    assert summary["baselines"] == {k: v["test_accuracy"] for k, v in result.items()}


def test_a_large_training_set_fits_the_baselines_on_a_stratified_subsample_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    x_train, y_train, x_test, y_test = digits_split()
    monkeypatch.setattr(baselines, "SUBSAMPLE", 300)
    result = baselines.fit_baselines(x_train, y_train, x_test, y_test)
    assert result["svc"]["trained_on"] == result["logistic_regression"]["trained_on"] == 300
    assert 0.8 < result["svc"]["test_accuracy"] < 1.0  # fewer images, still a real fit
    assert result == baselines.fit_baselines(x_train, y_train, x_test, y_test)  # seeded: the same subsample
    summary = baselines.baseline_summary(result, 0.99)
    assert summary["baselines_trained_on"] == {"svc": 300, "logistic_regression": 300}
    # the subsample keeps the class proportions (10 digits, ~120 each of 1200 -> ~30 each of 300)
    from pipeline.data.split import stratified_subsample

    counts = np.bincount(y_train[stratified_subsample(y_train, 300, 0)], minlength=10)
    assert counts.sum() == 300 and counts.min() >= 28


def test_too_many_pixels_skip_logistic_regression_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "MAX_VALUES", 10)
    result = baselines.fit_baselines(*digits_split())
    assert "too slow" in result["logistic_regression"]["skipped"] and "test_accuracy" in result["svc"]
    summary = baselines.baseline_summary(result, 0.9)
    assert summary["baselines_skipped"] == {"logistic_regression": result["logistic_regression"]["skipped"]}
    assert summary["best_baseline"] == "svc" and "baselines_trained_on" not in summary


def test_side_by_side_fits_give_the_same_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    split = digits_split()
    one_by_one = baselines.fit_baselines(*split)
    monkeypatch.setattr(baselines, "PARALLEL_FROM", 0)  # a process per baseline, as on a big folder
    assert baselines.fit_baselines(*split) == one_by_one


@pytest.mark.parametrize("rows", [2_000, 37])  # the test kernel in one piece, and in slices with a short last one
def test_svc_from_a_precomputed_kernel_is_svc_itself(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    from sklearn.svm import SVC

    x_train, y_train, x_test, _ = digits_split()
    monkeypatch.setattr(baselines, "KERNEL_ROWS", rows)
    flat_train, flat_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    expected = SVC(random_state=0).fit(flat_train, y_train).predict(flat_test)
    got = baselines.svc_predict(flat_train, y_train, flat_test)
    assert got.shape == expected.shape and (got == expected).all()
    # gamma="scale" follows the data's variance: scaled pixels give the same predictions, as with SVC()
    assert (baselines.svc_predict(flat_train * 16, y_train, flat_test * 16) == expected).all()
