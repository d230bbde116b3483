"""DVC stage ``preprocess``: source -> stratified split -> normalization -> data/processed/."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import replace_dir_atomic
from pipeline.config import Params
from pipeline.data.fingerprint import fingerprint
from pipeline.data.normalize import fit_normalization, normalize_in_place
from pipeline.data.reorder import gather_rows_in_place
from pipeline.data.sources import RawDataset, load_source
from pipeline.data.split import split_indices, stratified_subsample
from pipeline.data.store import SPLITS, save_meta, save_split
from pipeline.errors import DataError
from pipeline.paths import PROCESSED_DIR

Splits = dict[str, tuple[np.ndarray, np.ndarray]]


def check_counts(params: Params, raw: RawDataset) -> None:
    """One label per image: a source that returns more of one than the other is refused, not truncated."""
    images, labels = len(raw.x), np.shape(raw.y)
    if len(labels) != 1 or labels[0] != images:
        count = labels[0] if len(labels) == 1 else f"an array of shape {labels} of"
        raise DataError(f"data source {params.data.source!r} ({raw.dataset}): {images} images but {count} labels; "
                        "allowed: exactly one class index per image")


def split_in_place(params: Params, raw: RawDataset) -> Splits:
    """The stratified splits as consecutive views of ``raw.x`` (rows moved in place, not copied)."""
    check_counts(params, raw)
    keep = stratified_subsample(raw.y, params.data.max_samples, params.seed)
    parts = split_indices(raw.y[keep], params.split.validation, params.split.test, params.seed, raw.class_names)
    rows = {name: keep[parts[name]] for name in SPLITS}
    x = raw.x
    if x.dtype != np.float32 or not x.flags.writeable or not x.flags.c_contiguous:
        x = np.array(x, dtype=np.float32)  # a source's read-only or strided array: the one copy needed
    x = gather_rows_in_place(x, np.concatenate([rows[name] for name in SPLITS]))
    ends = np.cumsum([len(rows[name]) for name in SPLITS])
    return {name: (x[end - len(rows[name]):end], raw.y[rows[name]].astype(np.int32))
            for name, end in zip(SPLITS, ends, strict=True)}


def preprocess(params: Params, raw: RawDataset) -> tuple[Splits, dict[str, Any]]:
    """Split and normalize ``raw``; returns the splits and their ``meta.json`` content.

    The splits are views of ``raw.x``, rearranged and normalized in place, so the images are
    held once rather than once per step; ``raw`` is used up.
    """
    splits = split_in_place(params, raw)
    stats = fit_normalization(splits["train"][0], params.preprocess.normalization)
    for xs, _ in splits.values():
        normalize_in_place(xs, stats)
    arrays = {f"{kind}_{name}": arr for name, (xs, ys) in splits.items() for kind, arr in (("x", xs), ("y", ys))}
    meta = {
        "source": params.data.source,
        "dataset": raw.dataset,
        "class_names": raw.class_names,
        "num_classes": len(raw.class_names),
        "input_shape": list(raw.x.shape[1:]),
        "pixel_max": raw.pixel_max,
        "normalization": stats,
        "counts": {name: {raw.class_names[c]: int((ys == c).sum()) for c in range(len(raw.class_names))}
                   for name, (_, ys) in splits.items()},
        "sizes": {name: int(len(ys)) for name, (_, ys) in splits.items()},
        "skipped_files": raw.skipped,
        "seed": params.seed,
    }
    clash = sorted(set(raw.meta) & {*meta, "fingerprint"})
    if clash:
        raise ValueError(f"data source {params.data.source!r} sets meta.json key(s) the stage owns: {clash}")
    meta.update(raw.meta)
    meta["fingerprint"] = fingerprint(arrays, extra=repr(sorted(meta["normalization"].items())))
    return splits, meta


def write_processed(out_dir: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], meta: dict[str, Any]) -> None:
    """Write into a temporary sibling and swap it in, so a crash never leaves half a dataset."""
    with replace_dir_atomic(out_dir) as tmp:
        for name in SPLITS:
            save_split(tmp, name, *splits[name])
        save_meta(tmp, meta)


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
    raw = load_source(params.data)
    splits, meta = preprocess(params, raw)
    write_processed(PROCESSED_DIR, splits, meta)
    print(summary(meta))
    return 0
