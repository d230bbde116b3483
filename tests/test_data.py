"""Data sources, split and normalization, and the preprocess stage's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import parse_params
from pipeline.data import images, sources
from pipeline.data.normalize import apply_normalization, fit_normalization
from pipeline.data.split import split_indices, stratified_subsample
from pipeline.data.store import load_meta, load_split
from pipeline.errors import DataError
from pipeline.stages import preprocess
from tests.conftest import run_cli, write_params


def test_digits_source() -> None:
    raw = sources.load_digits()
    assert raw.x.shape == (1797, 8, 8, 1) and raw.x.dtype == np.float32
    assert raw.x.max() == 16 and raw.pixel_max == 16
    assert raw.class_names == [str(i) for i in range(10)]
    assert np.bincount(raw.y).min() > 170


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    y = np.repeat(np.arange(4), [100, 60, 30, 10])
    parts = split_indices(y, validation=0.2, test=0.2, seed=7)
    all_idx = np.concatenate(list(parts.values()))
    assert len(all_idx) == len(y) == len(np.unique(all_idx))  # disjoint and complete
    for name in ("validation", "test"):
        share = np.bincount(y[parts[name]], minlength=4) / len(parts[name])
        np.testing.assert_allclose(share, np.bincount(y) / len(y), atol=0.03)
    again = split_indices(y, validation=0.2, test=0.2, seed=7)
    other = split_indices(y, validation=0.2, test=0.2, seed=8)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["test"], other["test"])


def test_split_refuses_a_class_too_small() -> None:
    y = np.array([0] * 20 + [1] * 20 + [2] * 2)
    with pytest.raises(DataError, match=r"class\(es\) c have fewer than 3 images"):
        split_indices(y, 0.2, 0.2, seed=0, class_names=["a", "b", "c"])


def test_subsample_keeps_class_proportions() -> None:
    y = np.repeat(np.arange(2), [300, 100])
    kept = stratified_subsample(y, 40, seed=0)
    assert len(kept) == 40 and np.bincount(y[kept]).tolist() == [30, 10]
    assert len(stratified_subsample(y, None, seed=0)) == 400


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_normalization_is_fitted_on_train_only(method: str) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=(200, 4, 4, 3)).astype(np.float32)
    test = rng.normal(50.0, 9.0, size=(50, 4, 4, 3)).astype(np.float32)  # very different on purpose
    stats = fit_normalization(train, method)
    out_train = apply_normalization(train, stats)
    if method == "standardize":
        np.testing.assert_allclose(out_train.reshape(-1, 3).mean(0), 0, atol=1e-4)
        np.testing.assert_allclose(out_train.reshape(-1, 3).std(0), 1, atol=1e-3)
    else:
        assert out_train.min() == pytest.approx(0) and out_train.max() == pytest.approx(1)
    # the test split is transformed with train's statistics, so it is far from 0/1
    assert apply_normalization(test, stats).mean() > 3


def test_image_folders_with_corrupt_file(tmp_path: Path, make_images) -> None:
    root = make_images(tmp_path / "raw", {"cats": 6, "dogs": 5}, size=(20, 16))
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"1 unreadable image file\(s\): .*broken.png.*on_bad_image: skip"):
        images.load_image_folders(root, (8, 8), "grayscale", "error")
    raw = images.load_image_folders(root, (8, 6), "rgb", "skip")
    assert raw.x.shape == (11, 8, 6, 3) and raw.class_names == ["cats", "dogs"]
    assert raw.skipped == [str(root / "dogs" / "broken.png")]
    assert np.bincount(raw.y).tolist() == [6, 5]
    # generated classes differ in brightness: the reader kept the pixel values
    assert raw.x[raw.y == 1].mean() > raw.x[raw.y == 0].mean() + 30


@pytest.mark.parametrize(
    ("layout", "message"),
    [({"only": 3}, "need at least 2"), ({"a": 3, "empty": 0}, "holds no images")],
)
def test_image_folder_layout_errors(tmp_path: Path, make_images, layout: dict, message: str) -> None:
    root = make_images(tmp_path / "raw", layout)
    for name in layout:
        (root / name).mkdir(exist_ok=True)
    with pytest.raises(DataError, match=message):
        images.load_image_folders(root, (8, 8), "grayscale", "error")


def test_one_image_class_fails_preprocess_clearly(project: Path, make_images) -> None:
    make_images(project / "data/raw", {"a": 10, "b": 10, "lonely": 1})
    write_params(project, data={"source": "images", "image_size": [8, 8]})
    result = run_cli(["preprocess"], cwd=project)
    assert result.returncode == 2
    assert "lonely have fewer than 3 images" in result.stderr and "Traceback" not in result.stderr


def test_keras_source_with_mocked_download(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)

    def fake_load_data():
        x = rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8)
        y = np.repeat(np.arange(10), 3).reshape(-1, 1)  # CIFAR's labels are (N, 1)
        return (x[:20], y[:20]), (x[20:], y[20:])

    monkeypatch.setattr(sources, "_keras_loader", lambda name: fake_load_data)
    raw = sources.load_keras("cifar10")
    assert raw.x.shape == (30, 32, 32, 3) and raw.y.shape == (30,) and raw.pixel_max == 255
    assert raw.class_names[0] == "airplane"


def test_keras_source_offline_suggests_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline():
        raise OSError("URL fetch failure on https://storage.googleapis.com/...: no network")

    monkeypatch.setattr(sources, "_keras_loader", lambda name: offline)
    with pytest.raises(DataError, match="needs the network.*data.source: digits.*data.source: images"):
        sources.load_keras("mnist")


def test_keras_grayscale_gets_a_channel_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((12, 28, 28), dtype=np.uint8)
    y = np.arange(12) % 10
    monkeypatch.setattr(sources, "_keras_loader", lambda name: lambda: ((x[:8], y[:8]), (x[8:], y[8:])))
    assert sources.load_keras("fashion_mnist").x.shape == (12, 28, 28, 1)


def test_preprocess_stage_outputs(project: Path) -> None:
    result = run_cli(["preprocess", "-S", "data.max_samples=300"], cwd=project)
    assert result.returncode == 0, result.stderr
    assert "train 210, validation 45, test 45" in result.stdout and "fingerprint" in result.stdout
    meta = load_meta(project / "data/processed")
    assert meta["input_shape"] == [8, 8, 1] and meta["num_classes"] == 10
    assert sum(meta["counts"]["test"].values()) == 45
    x_train, y_train = load_split(project / "data/processed", "train")
    assert x_train.shape == (210, 8, 8, 1) and x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert abs(float(x_train.mean())) < 1e-3  # standardized with train statistics
    first = {p.name: p.read_bytes() for p in (project / "data/processed").iterdir()}
    assert run_cli(["preprocess", "-S", "data.max_samples=300"], cwd=project).returncode == 0
    second = {p.name: p.read_bytes() for p in (project / "data/processed").iterdir()}
    assert first == second  # byte-identical for the same parameters
    assert json.loads(first["meta.json"])["fingerprint"] == meta["fingerprint"]


def test_images_preprocess_and_prediction_loading_agree(tmp_path: Path, make_images) -> None:
    root = make_images(tmp_path / "raw", {"dark": 8, "light": 8})
    params = parse_params({"data": {"source": "images", "images_dir": str(root), "image_size": [6, 6]},
                           "split": {"validation": 0.25, "test": 0.25}})
    splits, meta = preprocess.preprocess(params, preprocess.load_source(params))
    assert meta["input_shape"] == [6, 6, 1] and meta["class_names"] == ["dark", "light"]
    x, files = images.load_for_prediction([root / "light"], meta)
    assert len(files) == 8 and x.shape == (8, 6, 6, 1)
    # a training image and the same file loaded for prediction are identical arrays
    train_x = np.concatenate([s[0] for s in splits.values()])
    assert any(np.allclose(x[0], t, atol=1e-5) for t in train_x)
