"""Stage ``evaluate``: the trained model on the untouched test split.

Writes DVC metrics (``results/evaluate/metrics.json``), the confusion matrix as a DVC
plot (one ``actual,predicted`` row of class names per test sample) and as a PNG, and
logs the same numbers to the MLflow train run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths
from pipeline.atomic import open_atomic, replace_atomic, write_json_atomic
from pipeline.lineage import require_same_data


def write_confusion_csv(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], path: Path) -> None:
    with open_atomic(path, newline="") as handle:  # a crash leaves the previous CSV whole
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for actual, predicted in zip(y_true, y_pred, strict=True):
            writer.writerow([class_names[int(actual)], class_names[int(predicted)]])


# Names that already say which split they describe keep it (no ``test_test_samples``).
_UNPREFIXED = ("test_", "train_", "generalization_gap")
# Details stay in MLflow: `dvc exp show` gets only the figures people compare across experiments.
_MLFLOW_ONLY = ("precision_macro", "recall_macro", "f1_per_class", "train_accuracy", "test_samples")


def mlflow_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flat ``test_*`` names for the MLflow run (per-class F1 as ``test_f1_<class>``)."""
    flat = {k if k.startswith(_UNPREFIXED) else f"test_{k}": float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.update({f"test_f1_{name}": value for name, value in metrics["f1_per_class"].items()})
    return flat


def dvc_metrics(metrics: dict[str, Any], run_id: str, model_sha256: str) -> dict[str, Any]:
    """``results/evaluate/metrics.json``: the compared figures, plus which model and run they belong to.

    ``register`` checks ``mlflow_run_id`` and ``model_sha256`` against the model it registers.
    """
    kept = {k: v for k, v in metrics.items() if k not in _MLFLOW_ONLY}
    return {**kept, "mlflow_run_id": run_id, "model_sha256": model_sha256}


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.data.store import load_split
    from pipeline.evaluation.baselines import baseline_summary, fit_baselines
    from pipeline.evaluation.model_io import file_sha256

    record, meta, model = load_checked_model()
    class_names = [str(c) for c in meta["class_names"]]
    (x_test, y_test), (x_train, y_train) = (load_split(paths.PROCESSED_DIR, s) for s in ("test", "train"))
    metrics, proba = score(model, meta, class_names, (x_train, y_train, x_test, y_test))
    baselines = baseline_summary(fit_baselines(x_train, y_train, x_test, y_test, seed=params.seed),
                                 metrics["accuracy"])
    write_outputs({**dvc_metrics(metrics, record["run_id"], file_sha256(paths.MODEL_FILE)), **baselines},
                  y_test, proba, class_names, metrics["accuracy"])
    log_and_print(params, record["run_id"], metrics, baselines, len(y_test))
    return 0


def load_checked_model() -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(run.json, meta.json, the model), refused when trained on other data or for another input shape."""
    from pipeline.data.store import load_meta
    from pipeline.errors import PipelineError
    from pipeline.evaluation.model_io import load_model_file
    from pipeline.tracking.api import read_train_run

    record = read_train_run(paths.TRAIN_RUN_FILE)
    meta = load_meta(paths.PROCESSED_DIR)
    require_same_data((record.get("data") or {}).get("fingerprint"), meta.get("fingerprint"),
                      what=str(paths.MODEL_FILE), data=str(paths.PROCESSED_DIR),
                      fix="rerun `python -m pipeline train` on this data (or `dvc repro`)")
    model = load_model_file(paths.MODEL_FILE)
    expected, holds = tuple(model.input_shape[1:]), tuple(meta["input_shape"])
    if holds != expected:
        raise PipelineError(f"{paths.MODEL_FILE} takes images of shape {expected} but {paths.PROCESSED_DIR} holds "
                            f"{holds}; rerun `python -m pipeline train` on this data (or `dvc repro`)")
    return record, meta, model


def score(model: Any, meta: dict[str, Any], class_names: list[str],
          data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[dict[str, Any], np.ndarray]:
    """The test metrics (and the generalization gap) and the test probabilities."""
    from pipeline.evaluation.inputs import inputs_for
    from pipeline.evaluation.metrics import accuracy, classification_metrics, predict_proba
    from pipeline.model.export import input_kind

    x_train, y_train, x_test, y_test = data
    # A self-contained model is scored on raw pixels, as users and `mlflow models serve` feed it.
    kind, stats = input_kind(model), meta["normalization"]
    proba = predict_proba(model, inputs_for(kind, x_test, stats))
    metrics = classification_metrics(y_test, proba, class_names)
    # Accuracy of the final (restored best) weights on the training split, for the gap.
    metrics["train_accuracy"] = accuracy(y_train, predict_proba(model, inputs_for(kind, x_train, stats)))
    metrics["generalization_gap"] = metrics["train_accuracy"] - metrics["accuracy"]
    return metrics, proba


def write_outputs(evaluated: dict[str, Any], y_test: np.ndarray, proba: np.ndarray, class_names: list[str],
                  test_accuracy: float) -> None:
    from pipeline.evaluation.metrics import confusion
    from pipeline.evaluation.plots import save_confusion_png

    paths.EVALUATE_DIR.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.EVALUATE_METRICS_FILE, evaluated)
    write_confusion_csv(y_test, np.argmax(proba, axis=1), class_names, paths.CONFUSION_CSV)
    matrix = confusion(y_test, proba, len(class_names))
    with replace_atomic(paths.CONFUSION_PNG) as png:
        save_confusion_png(matrix, class_names, png,
                           title=f"test split: accuracy {test_accuracy:.3f} ({len(y_test)} samples)")


def log_and_print(params: Any, run_id: str, metrics: dict[str, Any], baselines: dict[str, Any], samples: int) -> None:
    from pipeline.evaluation.baselines import MARGIN_KEY
    from pipeline.tracking.api import open_tracker

    tracker = open_tracker(params)
    baseline_metrics = {f"baseline_{k}_test_accuracy": v for k, v in baselines["baselines"].items()}
    if baselines[MARGIN_KEY] is not None:
        baseline_metrics[MARGIN_KEY] = baselines[MARGIN_KEY]
    tracker.log_to_run(run_id, {**mlflow_metrics(metrics), **baseline_metrics},
                       artifacts=[paths.EVALUATE_METRICS_FILE, paths.CONFUSION_PNG, paths.CONFUSION_CSV])
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, macro F1 {metrics['f1_macro']:.4f}, "
          f"generalization gap {metrics['generalization_gap']:+.4f} ({samples} test samples); "
          f"wrote {paths.EVALUATE_METRICS_FILE}")
    trained_on = baselines.get("baselines_trained_on", {})
    for name, value in baselines["baselines"].items():
        subsample = f" (fitted on {trained_on[name]} of the training images)" if name in trained_on else ""
        print(f"  baseline {name}: test accuracy {value:.4f}{subsample}")
    for name, why in baselines.get("baselines_skipped", {}).items():
        print(f"  baseline {name}: skipped ({why})")
    if baselines["best_baseline"]:
        print(f"  margin over the best baseline ({baselines['best_baseline']}): {baselines[MARGIN_KEY]:+.4f}")
