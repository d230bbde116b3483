"""``predict``: classify image files with a registered model (or a ``.keras`` file).

Images are preprocessed exactly like the model's training data: the data description
(input shape, pixel scale, normalization, class names) is read from the model's metadata in the
tracker, or from ``data/processed/meta.json`` for a plain ``.keras`` file.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.errors import PipelineError


def load_images(image_paths: list[str], meta: dict[str, Any],
                unreadable: list[tuple[Path, str]] | None = None) -> tuple[np.ndarray, list[Path]]:
    """The one place predict reads images: the data package's own preprocessing."""
    from pipeline.data.images import load_for_prediction

    return load_for_prediction([Path(p) for p in image_paths], meta, unreadable)


def _load_model(locator: Any, tracker: Any) -> tuple[Any, dict[str, Any]]:
    """(Keras model, data description) for a ``ModelLocator``: a tracked model or a ``.keras`` file."""
    from pipeline.evaluation.model_io import load_model_file, register_custom_objects

    if locator.file is not None:
        from pipeline.data.store import load_meta

        return load_model_file(locator.file), load_meta(paths.PROCESSED_DIR)
    register_custom_objects()
    meta = tracker.model_data(locator.model)
    if meta is None:  # a model logged without the data description
        from pipeline.data.store import load_meta

        meta = load_meta(paths.PROCESSED_DIR)
    return tracker.load_model(locator.model), meta


def format_prediction(file: Path, proba: np.ndarray, class_names: list[str], top: int) -> str:
    order = np.argsort(-proba, kind="stable")[:top]
    return f"{file}\t" + "\t".join(f"{class_names[i]}\t{proba[i]:.4f}" for i in order)


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    if args.top < 1:
        raise PipelineError(f"--top {args.top}: allowed: 1 or more")
    from pipeline.tracking.api import locate_model

    # a tracked model connects to the store (and a malformed address is refused before that)
    locator, tracker = locate_model(params, args.model)
    model, meta = _load_model(locator, tracker)
    class_names = [str(c) for c in meta["class_names"]]
    from pipeline.model.export import takes_raw_input

    if takes_raw_input(model):  # it normalizes itself: images go in resized, on the source's pixel scale
        meta = {**meta, "normalization": {"method": "none"}}
    unreadable: list[tuple[Path, str]] = []
    x, files = load_images(list(args.paths), meta, unreadable)
    expected = tuple(model.input_shape[1:])
    if tuple(x.shape[1:]) != expected:
        raise PipelineError(f"images were prepared as {tuple(x.shape[1:])} but {locator} expects {expected}")
    from pipeline.evaluation.metrics import predict_proba

    proba = predict_proba(model, x)
    top = min(args.top, len(class_names))
    print(f"# {locator}: file, then the {top} most likely class(es) with probability")
    for file, row in zip(files, proba, strict=True):
        print(format_prediction(file, row, class_names, top))
    for file, reason in unreadable:  # after the others' predictions: one bad file costs only itself
        print(f"error: {file}: unreadable image, not predicted ({reason[:120]})", file=sys.stderr)
    return 2 if unreadable else 0
