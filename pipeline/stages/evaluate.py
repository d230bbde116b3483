"""Stage ``evaluate``: the trained model on the untouched test split.

Writes DVC metrics (``results/evaluate/metrics.json``), the confusion matrix as a DVC
plot (one ``actual,predicted`` row of class names per test sample) and as a PNG, and
logs the same numbers to the MLflow train run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import paths


def write_confusion_csv(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actual", "predicted"])
        for actual, predicted in zip(y_true, y_pred, strict=True):
            writer.writerow([class_names[int(actual)], class_names[int(predicted)]])


def mlflow_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Flat ``test_*`` names for the MLflow run (per-class F1 as ``test_f1_<class>``)."""
    flat = {f"test_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    flat.update({f"test_f1_{name}": value for name, value in metrics["f1_per_class"].items()})
    flat["train_accuracy"] = float(metrics["train_accuracy"])
    flat["generalization_gap"] = float(metrics["generalization_gap"])
    flat.pop("test_train_accuracy", None)
    flat.pop("test_generalization_gap", None)
    return flat


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.data.store import load_meta, load_split
    from pipeline.evaluation.metrics import accuracy, classification_metrics, confusion, predict_proba
    from pipeline.evaluation.model_io import load_model_file
    from pipeline.evaluation.plots import save_confusion_png
    from pipeline.tracking.train_run import read_train_run

    record = read_train_run(paths.TRAIN_RUN_FILE)
    meta = load_meta(paths.PROCESSED_DIR)
    class_names = [str(c) for c in meta["class_names"]]
    x_test, y_test = load_split(paths.PROCESSED_DIR, "test")
    x_train, y_train = load_split(paths.PROCESSED_DIR, "train")
    model = load_model_file(paths.MODEL_FILE)

    proba = predict_proba(model, x_test)
    metrics = classification_metrics(y_test, proba, class_names)
    # Accuracy of the final (restored best) weights on the training split, for the gap.
    metrics["train_accuracy"] = accuracy(y_train, predict_proba(model, x_train))
    metrics["generalization_gap"] = metrics["train_accuracy"] - metrics["accuracy"]

    paths.EVALUATE_DIR.mkdir(parents=True, exist_ok=True)
    paths.EVALUATE_METRICS_FILE.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_confusion_csv(y_test, np.argmax(proba, axis=1), class_names, paths.CONFUSION_CSV)
    matrix = confusion(y_test, proba, len(class_names))
    save_confusion_png(matrix, class_names, paths.CONFUSION_PNG,
                       title=f"test split: accuracy {metrics['accuracy']:.3f} ({len(y_test)} samples)")

    from pipeline.tracking.store import configure
    from pipeline.tracking.train_run import log_to_run

    configure(params)
    log_to_run(record["run_id"], mlflow_metrics(metrics),
               artifacts=[paths.EVALUATE_METRICS_FILE, paths.CONFUSION_PNG, paths.CONFUSION_CSV])
    print(f"test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, macro F1 {metrics['f1_macro']:.4f}, "
          f"generalization gap {metrics['generalization_gap']:+.4f} ({len(y_test)} test samples); "
          f"wrote {paths.EVALUATE_METRICS_FILE}")
    return 0
