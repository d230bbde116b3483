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


def test_too_large_data_skips_a_baseline_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "MAX_SVC_SAMPLES", 100)
    result = baselines.fit_baselines(*digits_split())
    assert "too slow" in result["svc"]["skipped"] and "test_accuracy" in result["logistic_regression"]
    monkeypatch.setattr(baselines, "MAX_VALUES", 10)
    every = baselines.fit_baselines(*digits_split())
    assert all("skipped" in r for r in every.values())
    assert baselines.baseline_summary(every, 0.9) == {
        "baselines": {}, "baselines_skipped": {k: v["skipped"] for k, v in every.items()}, "best_baseline": None,
        "baseline_margin": None}
