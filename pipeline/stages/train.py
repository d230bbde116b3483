"""Stage ``train``: retrain the search's best hyperparameters into ``models/model.keras``.

Same hypermodel, learning-rate schedule and seed as the search, for ``train.epochs``
with early stopping on the tuning objective (best weights restored). Writes the
per-epoch history for ``dvc plots`` and the MLflow run's ids for evaluate/register.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.handoff import read_handoff

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")


def read_best_hparams(path: Path = paths.BEST_HPARAMS_FILE) -> dict[str, Any]:
    best = read_handoff(path, producer="tune", required="values")
    if not isinstance(best["values"], dict):
        raise PipelineError(f"{path}: 'values' is not a mapping of hyperparameters; rerun `python -m pipeline tune`")
    return best


def write_history(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: row.get(key, "") for key in HISTORY_COLUMNS})


def _monitor(objective: Any) -> str:
    return objective if objective in ("val_accuracy", "val_loss") else "val_loss"


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    best = read_best_hparams()
    from pipeline.data.store import load_meta, load_split

    meta = load_meta(paths.PROCESSED_DIR)
    x_train, y_train = load_split(paths.PROCESSED_DIR, "train")
    x_val, y_val = load_split(paths.PROCESSED_DIR, "validation")
    searched_on = best.get("data_fingerprint")
    if searched_on and meta.get("fingerprint") and searched_on != meta["fingerprint"]:
        print(f"warning: {paths.BEST_HPARAMS_FILE} comes from a search on other data (fingerprint {searched_on}, "
              f"now {meta['fingerprint']}); rerun `python -m pipeline tune` to search on this data", file=sys.stderr)

    import keras

    from pipeline.model.hypermodel import CNNHyperModel, hyperparameters_from_values
    from pipeline.tracking.store import configure
    from pipeline.tracking.train_run import TrainRun

    tracking_uri = configure(params)
    keras.utils.set_random_seed(params.seed)
    hypermodel = CNNHyperModel(space=params.search_space, input_shape=tuple(meta["input_shape"]),
                               num_classes=meta["num_classes"], seed=params.seed)
    try:
        hp = hyperparameters_from_values(params.search_space, best["values"])
    except (KeyError, ValueError, TypeError) as error:
        raise PipelineError(f"{paths.BEST_HPARAMS_FILE}: its values do not fit search_space in params.yaml "
                            f"({error}); rerun `python -m pipeline tune`") from None
    model = hypermodel.build(hp)
    monitor = _monitor(best.get("objective"))
    rows: list[dict[str, Any]] = []
    tags = {"search_run_id": best.get("search_run_id"), "trial_id": best.get("trial_id"),
            "data_fingerprint": meta.get("fingerprint"), "stage": "train"}

    with TrainRun(tracking_uri, best["values"], tags) as mlflow_run:

        def on_epoch_end(epoch: int, logs: dict[str, Any] | None) -> None:
            logs = dict(logs or {})
            if "learning_rate" not in logs:
                logs["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            rows.append(row)
            mlflow_run.log_epoch(epoch + 1, logs)
            print(f"epoch {epoch + 1}/{params.train.epochs}: "
                  + "  ".join(f"{k} {row[k]:.4f}" for k in HISTORY_COLUMNS[1:] if k in row), flush=True)

        stopper = keras.callbacks.EarlyStopping(monitor=monitor, patience=params.train.early_stopping_patience,
                                                restore_best_weights=True)
        hypermodel.fit(hp, model, x_train, y_train, validation_data=(x_val, y_val), epochs=params.train.epochs,
                       callbacks=[stopper, keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)], verbose=0)
        if not rows:
            raise PipelineError("training ran no epoch; check train.epochs in params.yaml")
        scores = [row.get(monitor, float("nan")) for row in rows]
        pick = max if monitor == "val_accuracy" else min
        best_row = rows[scores.index(pick(scores))]
        summary = {f"best_{monitor}": best_row[monitor], "best_epoch": best_row["epoch"], "epochs_run": len(rows)}
        mlflow_run.log_summary(summary, tags={"stopped_early": str(len(rows) < params.train.epochs).lower()})

        paths.MODEL_DIR.mkdir(parents=True, exist_ok=True)
        model.save(paths.MODEL_FILE)
        write_history(rows, paths.HISTORY_FILE)
        mlflow_run.log_artifact(paths.HISTORY_FILE)
        record = {
            "run_id": mlflow_run.run_id,
            "experiment_id": mlflow_run.experiment_id,
            "tracking_uri": tracking_uri,
            "run_name": mlflow_run.run_name,
            "search_run_id": best.get("search_run_id"),
            "trial_id": best.get("trial_id"),
            "hparams": best["values"],
            "monitor": monitor,
            "best_epoch": best_row["epoch"],
            "epochs_run": len(rows),
            # The data the model was trained on, for register (signature) and predict (preprocessing).
            "data": meta,
        }
    paths.TRAIN_RUN_FILE.parent.mkdir(parents=True, exist_ok=True)
    paths.TRAIN_RUN_FILE.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"trained {len(rows)} epoch(s), best {monitor} {best_row[monitor]:.4f} at epoch {best_row['epoch']}; "
          f"saved {paths.MODEL_FILE}; MLflow run {mlflow_run.run_name} ({mlflow_run.run_id})")
    return 0

