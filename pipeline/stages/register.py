"""Stage ``register``: the trained model as a new version in the MLflow Model Registry.

The model is logged into the train run with a signature and the data description,
registered under ``register.model_name``, tagged with its evidence and given the alias
``challenger``. A model with the same architecture and weights as a registered version
(a forced rerun, or a retraining that reproduced it) reuses that version.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import paths
from pipeline.errors import PipelineError


def _read_metrics() -> dict[str, Any]:
    path = paths.EVALUATE_METRICS_FILE
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `python -m pipeline evaluate` (or `dvc repro`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def version_tags(metrics: dict[str, Any], record: dict[str, Any], commit: str | None) -> dict[str, Any]:
    """The evidence a version carries: test metrics, data, code, hyperparameters, search."""
    tags: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            name = key if key in ("train_accuracy", "generalization_gap") else f"test_{key}"
            tags[name] = f"{value:.6g}"
    tags["data_fingerprint"] = (record.get("data") or {}).get("fingerprint")
    tags["git_commit"] = commit
    tags["search_run_id"] = record.get("search_run_id")
    tags["train_run_id"] = record["run_id"]
    tags["best_hparams"] = json.dumps(record.get("hparams") or {}, sort_keys=True)[:5000]
    for key, value in sorted((record.get("hparams") or {}).items()):
        tags[f"hp.{key}"] = value
    return tags


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.tracking import registry
    from pipeline.tracking.store import configure
    from pipeline.tracking.train_run import git_commit, read_train_run

    record = read_train_run(paths.TRAIN_RUN_FILE)
    metrics = _read_metrics()
    data = record.get("data") or {}
    if "input_shape" not in data or "num_classes" not in data:
        raise PipelineError(f"{paths.TRAIN_RUN_FILE}: no data description; run `python -m pipeline train` again")
    name = params.register.model_name
    configure(params)
    from pipeline.evaluation.model_io import load_model_file, model_fingerprint

    model = load_model_file(paths.MODEL_FILE)
    content_hash = model_fingerprint(model)
    version = registry.find_version_by_hash(name, content_hash)
    if version is not None:
        print(f"{paths.MODEL_FILE} holds the same architecture and weights as {name} version {version.version}; "
              "reusing it (no new version)")
    else:
        version = registry.register_keras_model(
            model, name=name, run_id=record["run_id"], input_shape=tuple(data["input_shape"]),
            num_classes=int(data["num_classes"]), content_hash=content_hash, metadata=data,
            tags=version_tags(metrics, record, git_commit()))
        print(f"registered {name} version {version.version} from run {record['run_id']}")
    registry.set_alias(name, registry.CHALLENGER, version.version)

    out = {"name": name, "version": version.version, "uri": version.uri,
           "alias_uri": f"models:/{name}@{registry.CHALLENGER}", "run_id": version.run_id,
           "model_content_sha256": content_hash, "test_accuracy": metrics.get("accuracy")}
    paths.REGISTER_DIR.mkdir(parents=True, exist_ok=True)
    paths.REGISTERED_MODEL_FILE.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"alias {registry.CHALLENGER} -> {name} version {version.version} ({version.uri}); "
          f"`python -m pipeline promote` compares it with the champion")
    return 0
