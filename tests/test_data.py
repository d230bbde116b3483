"""Data sources, split and normalization, and the preprocess stage's outputs."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from pipeline.config import DataConfig, parse_params
from pipeline.data import images, sources
from pipeline.data.fingerprint import fingerprint
from pipeline.data.moments import channel_mean_std
from pipeline.data.normalize import apply_normalization, fit_normalization, normalize_in_place
from pipeline.data.reorder import gather_rows_in_place
from pipeline.data.sources import image_folders, keras_datasets
from pipeline.data.split import split_indices, stratified_subsample
from pipeline.data.store import load_meta, load_split
from pipeline.errors import DataError
from pipeline.stages import preprocess
from tests.conftest import run_cli, write_params


def data_config(**values: object) -> DataConfig:
    return parse_params({"data": values}).data


def test_registry_knows_exactly_the_sources_the_schema_allows() -> None:
    assert sorted(sources.SOURCES.implemented()) == sorted(sources.SOURCES.names())
    assert all(sources.SOURCES.implementation(name).name == name for name in sources.SOURCES)


def test_digits_source() -> None:
    raw = sources.load_source(data_config(source="digits"))
    assert raw.x.shape == (1797, 8, 8, 1) and raw.x.dtype == np.float32
    assert raw.x.max() == 16 and raw.pixel_max == 16
    assert raw.class_names == [str(i) for i in range(10)] and raw.dataset == "digits"
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
        image_folders.load_image_folders(root, (8, 8), "grayscale", "error")
    raw = image_folders.load_image_folders(root, (8, 6), "rgb", "skip")
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
        image_folders.load_image_folders(root, (8, 8), "grayscale", "error")


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

    monkeypatch.setattr(keras_datasets, "_keras_loader", lambda name: fake_load_data)
    raw = sources.load_source(data_config(source="keras", keras_dataset="cifar10"))
    assert raw.x.shape == (30, 32, 32, 3) and raw.x.dtype == np.float32 and raw.y.shape == (30,)
    assert raw.pixel_max == 255 and raw.class_names[0] == "airplane" and raw.dataset == "cifar10"
    assert raw.y.tolist() == np.repeat(np.arange(10), 3).tolist()  # train part first, then test


def test_keras_source_offline_suggests_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline():
        raise OSError("URL fetch failure on https://storage.googleapis.com/...: no network")

    monkeypatch.setattr(keras_datasets, "_keras_loader", lambda name: offline)
    with pytest.raises(DataError, match="needs the network.*data.source: digits.*data.source: images"):
        sources.load_source(data_config(source="keras", keras_dataset="mnist"))


def test_keras_grayscale_gets_a_channel_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.zeros((12, 28, 28), dtype=np.uint8)
    y = np.arange(12) % 10
    monkeypatch.setattr(keras_datasets, "_keras_loader", lambda name: lambda: ((x[:8], y[:8]), (x[8:], y[8:])))
    assert keras_datasets.load_keras("fashion_mnist").x.shape == (12, 28, 28, 1)


def test_keras_dataset_through_the_stage_records_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(60, 28, 28), dtype=np.uint8)
    y = np.arange(60) % 10
    monkeypatch.setattr(keras_datasets, "_keras_loader", lambda name: lambda: ((x[:50], y[:50]), (x[50:], y[50:])))
    params = parse_params({"data": {"source": "keras", "keras_dataset": "fashion_mnist"},
                           "split": {"validation": 0.2, "test": 0.2}})
    splits, meta = preprocess.preprocess(params, sources.load_source(params.data))
    assert meta["source"] == "keras" and meta["dataset"] == "fashion_mnist" and meta["input_shape"] == [28, 28, 1]
    assert meta["class_names"][9] == "ankle-boot" and sum(meta["sizes"].values()) == 60


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
    splits, meta = preprocess.preprocess(params, sources.load_source(params.data))
    assert meta["input_shape"] == [6, 6, 1] and meta["class_names"] == ["dark", "light"]
    x, files = images.load_for_prediction([root / "light"], meta)
    assert len(files) == 8 and x.shape == (8, 6, 6, 1)
    # a training image and the same file loaded for prediction are identical arrays
    train_x = np.concatenate([s[0] for s in splits.values()])
    assert any(np.allclose(x[0], t, atol=1e-5) for t in train_x)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("chunk", [100, 1 << 16])
def test_streamed_statistics_equal_scikit_learn_bit_for_bit(channels: int, chunk: int) -> None:
    rng = np.random.default_rng(channels)
    pixels = rng.normal(120, 60, size=(50_001, channels)).astype(np.float32)
    pixels[:, 0] = np.round(pixels[:, 0])  # integer pixel values, as from image files
    scaler = StandardScaler().fit(pixels.astype(np.float64))
    mean, std = channel_mean_std(pixels, chunk)
    assert mean.tobytes() == scaler.mean_.tobytes() and std.tobytes() == scaler.scale_.tobytes()
    constant = np.full((1000, channels), 7.0, dtype=np.float32)  # std 0 -> scale 1, as scikit-learn
    reference = StandardScaler().fit(constant.astype(np.float64)).scale_
    assert channel_mean_std(constant, chunk)[1].tolist() == reference.tolist() == [1.0] * channels


@pytest.mark.parametrize("method", ["standardize", "minmax", "none"])
def test_fit_and_in_place_normalization_match_the_float64_reference(method: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(300, 9, 7, 3)).astype(np.float32)
    x[..., 2] = 5.0  # a constant channel
    pixels = x.reshape(-1, 3).astype(np.float64)
    stats = fit_normalization(x, method)
    if method == "standardize":
        scaler = StandardScaler().fit(pixels)
        assert stats["mean"] == scaler.mean_.tolist() and stats["std"] == scaler.scale_.tolist()
    elif method == "minmax":
        scaler = MinMaxScaler().fit(pixels)
        assert stats["min"] == scaler.data_min_.tolist()
        assert stats["range"] == np.where(scaler.data_range_ > 0, scaler.data_range_, 1.0).tolist()
    expected = apply_normalization(x, stats)
    normalize_in_place(x, stats)
    assert x.dtype == np.float32 and x.tobytes() == expected.tobytes()


def test_gather_rows_in_place_equals_fancy_indexing() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(101, 4, 2)).astype(np.float32)
    for order in (rng.permutation(101), rng.permutation(101)[:37], np.arange(101), np.array([], dtype=int)):
        work = x.copy()
        view = gather_rows_in_place(work, order)
        assert view.base is work and view.tobytes() == x[order].tobytes()  # a view: nothing copied
        left = np.setdiff1d(np.arange(101), order)
        assert work[len(order):].tobytes() == x[left].tobytes()  # the rest keeps its order after them
    with pytest.raises(ValueError, match="repeats"):
        gather_rows_in_place(x.copy(), np.array([1, 1]))


@pytest.mark.parametrize(("max_samples", "method"), [(None, "standardize"), (90, "minmax"), (None, "none")])
def test_in_place_preprocess_equals_the_copying_reference(max_samples: int | None, method: str) -> None:
    """What preprocess did before it worked in place: same arrays, statistics and fingerprint."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(150, 6, 5, 3)).astype(np.float32)
    y = np.repeat(np.arange(3), 50)
    params = parse_params({"seed": 3, "data": {"source": "images", "max_samples": max_samples},
                           "preprocess": {"normalization": method}})
    keep = stratified_subsample(y, max_samples, 3)
    parts = split_indices(y[keep], 0.15, 0.15, 3)
    stats = fit_normalization(x[keep][parts["train"]].copy(), method)
    expected = {name: (apply_normalization(x[keep][idx], stats), y[keep][idx].astype(np.int32))
                for name, idx in parts.items()}
    arrays = {f"{k}_{n}": a for n, (xs, ys) in expected.items() for k, a in (("x", xs), ("y", ys))}
    raw = sources.RawDataset(x=x.copy(), y=y, class_names=["a", "b", "c"], pixel_max=255.0, dataset="images")
    splits, meta = preprocess.preprocess(params, raw)
    for name, (xs, ys) in expected.items():
        assert splits[name][0].tobytes() == xs.tobytes() and splits[name][1].tobytes() == ys.tobytes()
    assert meta["normalization"] == stats
    assert meta["fingerprint"] == fingerprint(arrays, extra=repr(sorted(stats.items())))


def test_preprocess_holds_the_images_once() -> None:
    """Splitting and normalizing allocate next to nothing beyond the source's own array."""
    rng = np.random.default_rng(0)
    raw = sources.RawDataset(x=rng.integers(0, 256, size=(4000, 32, 32, 3)).astype(np.float32),
                             y=np.arange(4000) % 10, class_names=list("abcdefghij"), pixel_max=255.0,
                             dataset="images")
    params = parse_params({"data": {"source": "images"}})
    tracemalloc.start()
    try:
        preprocess.preprocess(params, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Was over 4x: a subsample copy, per-split copies, a float64 copy for the statistics and one per
    # split. Now only chunks of a few MB (float64 work space), whatever the size of the images.
    assert peak < 0.25 * raw.x.nbytes, f"peak {peak / 2**20:.1f} MB for {raw.x.nbytes / 2**20:.1f} MB of images"


def test_a_source_adds_meta_keys_but_cannot_overwrite_the_stage_s(tmp_path: Path) -> None:
    params = parse_params({"split": {"validation": 0.2, "test": 0.2}})

    def raw(meta: dict) -> sources.RawDataset:
        return sources.RawDataset(x=np.ones((30, 4, 4, 1), np.float32), y=np.arange(30) % 3,
                                  class_names=["a", "b", "c"], pixel_max=1.0, dataset="x", meta=meta)

    assert preprocess.preprocess(params, raw({"revision": "abc123"}))[1]["revision"] == "abc123"
    with pytest.raises(ValueError, match=r"meta.json key\(s\) the stage owns: \['fingerprint', 'sizes'\]"):
        preprocess.preprocess(params, raw({"sizes": 1, "fingerprint": "0"}))


@pytest.mark.parametrize(("images", "labels", "said"), [(40, 30, "40 images but 30"),
                                                         (30, 40, "30 images but 40"),
                                                         (30, (30, 1), "30 images but an array of shape (30, 1) of")])
def test_preprocess_refuses_an_image_label_count_mismatch(images: int, labels: object, said: str) -> None:
    params = parse_params({"split": {"validation": 0.2, "test": 0.2}})
    y = np.arange(np.prod(labels)).reshape(labels) % 3
    raw = sources.RawDataset(x=np.ones((images, 4, 4, 1), np.float32), y=y, class_names=["a", "b", "c"],
                             pixel_max=1.0, dataset="toy")
    with pytest.raises(DataError) as raised:
        preprocess.preprocess(params, raw)
    assert raised.value.lines == [f"data source 'digits' (toy): {said} labels; allowed: exactly one class index "
                                  "per image"]


def test_a_processed_split_with_more_images_than_labels_is_one_line_naming_the_files(tmp_path: Path) -> None:
    from pipeline.data.store import save_split

    save_split(tmp_path, "train", np.zeros((5, 2, 2, 1)), np.arange(4))
    with pytest.raises(DataError) as raised:
        load_split(tmp_path, "train")
    assert raised.value.lines == [f"{tmp_path / 'x_train.npy'}: 5 images but y_train.npy has 4 labels; allowed: "
                                  "one label per image (rerun `python -m pipeline preprocess`)"]
    save_split(tmp_path, "train", np.zeros((4, 2, 2, 1)), np.arange(4))
    x, y = load_split(tmp_path, "train")
    assert x.shape == (4, 2, 2, 1) and y.tolist() == [0, 1, 2, 3] and not isinstance(x, np.memmap)
