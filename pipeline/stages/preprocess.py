"""DVC stage ``preprocess``: source -> stratified split -> normalization -> data/processed/."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import Params
from pipeline.data import images, sources
from pipeline.data.fingerprint import fingerprint
from pipeline.data.normalize import apply_normalization, fit_normalization
from pipeline.data.split import split_indices, stratified_subsample
from pipeline.data.store import SPLITS, save_meta, save_split
from pipeline.paths import PROCESSED_DIR


def load_source(params: Params) -> sources.RawDataset:
    data = params.data
    if data.source == "digits":
        return sources.load_digits()
    if data.source == "keras":
        return sources.load_keras(data.keras_dataset)
    return images.load_image_folders(data.images_dir, tuple(data.image_size), data.color_mode, data.on_bad_image)


def preprocess(params: Params, raw: sources.RawDataset) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]],
                                                                  dict[str, Any]]:
    """Split and normalize ``raw``; returns the splits and their ``meta.json`` content."""
    keep = stratified_subsample(raw.y, params.data.max_samples, params.seed)
    x, y = raw.x[keep], raw.y[keep]
    parts = split_indices(y, params.split.validation, params.split.test, params.seed, raw.class_names)
    stats = fit_normalization(x[parts["train"]], params.preprocess.normalization)
    splits = {name: (apply_normalization(x[idx], stats), y[idx].astype(np.int32)) for name, idx in parts.items()}
    arrays = {f"{kind}_{name}": arr for name, (xs, ys) in splits.items() for kind, arr in (("x", xs), ("y", ys))}
    meta = {
        "source": params.data.source,
        "dataset": params.data.keras_dataset if params.data.source == "keras" else params.data.source,
        "class_names": raw.class_names,
        "num_classes": len(raw.class_names),
        "input_shape": list(x.shape[1:]),
        "pixel_max": raw.pixel_max,
        "normalization": stats,
        "counts": {name: {raw.class_names[c]: int((ys == c).sum()) for c in range(len(raw.class_names))}
                   for name, (_, ys) in splits.items()},
        "sizes": {name: int(len(ys)) for name, (_, ys) in splits.items()},
        "skipped_files": raw.skipped,
        "seed": params.seed,
    }
    meta["fingerprint"] = fingerprint(arrays, extra=repr(sorted(meta["normalization"].items())))
    return splits, meta


def write_processed(out_dir: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]) -> None:
    """Write into a temporary sibling and swap it in, so a crash never leaves half a dataset."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        for name in SPLITS:
            save_split(tmp, name, *splits[name])
        save_meta(tmp, meta)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summary(meta: dict[str, Any]) -> str:
    sizes = meta["sizes"]
    shape = "x".join(map(str, meta["input_shape"]))
    lines = [
        f"preprocess: {meta['dataset']} -> {PROCESSED_DIR}/",
        f"  images {sum(sizes.values())} ({shape}), {meta['num_classes']} classes, "
        f"normalization {meta['normalization']['method']}",
        "  " + ", ".join(f"{name} {sizes[name]}" for name in SPLITS),
        f"  fingerprint {meta['fingerprint'][:16]}",
    ]
    if meta["skipped_files"]:
        lines.append(f"  skipped {len(meta['skipped_files'])} unreadable file(s)")
    return "\n".join(lines)


def run(params: Params, args: argparse.Namespace | None = None) -> int:
    raw = load_source(params)
    splits, meta = preprocess(params, raw)
    write_processed(PROCESSED_DIR, splits, meta)
    print(summary(meta))
    return 0
