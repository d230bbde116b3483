"""Stage ``register``: the trained model as a new version in the tracker's model registry (MLflow's).

The model is logged into the train run with a signature (what it takes: raw pixels of the
source's scale, or normalized arrays for older models) and the data description, registered
under ``register.model_name`` and tagged with the few facts a person looks for. It gets the
alias ``challenger`` only when it passes the gate (``register.min_accuracy``, and beating the
scikit-learn baselines evaluate measured); a model that fails is still registered and says
why. A model with the same architecture and weights as a registered version reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import paths
from pipeline.atomic import write_json_atomic
from pipeline.errors import PipelineError
from pipeline.handoff import read_handoff
from pipeline.lineage import require_same_data


@dataclass(frozen=True)
class Gate:
    passed: bool
    reason: str
    note: str | None = None  # a part of the gate that could not be checked


def check_gate(metrics: dict[str, Any], min_accuracy: float, require_beat_baseline: bool) -> Gate:
    """Whether the evaluated model deserves alias ``challenger``; pure, so the rule is tested alone."""
    accuracy = float(metrics["accuracy"])
    if accuracy < min_accuracy:
        return Gate(False, f"test accuracy {accuracy:.4f} is below register.min_accuracy {min_accuracy:.4f}")
    if not require_beat_baseline:
        return Gate(True, f"test accuracy {accuracy:.4f} >= register.min_accuracy {min_accuracy:.4f}")
    baselines = {name: float(value) for name, value in (metrics.get("baselines") or {}).items()
                 if isinstance(value, (int, float))}
    if not baselines:
        return Gate(True, f"test accuracy {accuracy:.4f} >= register.min_accuracy {min_accuracy:.4f}",
                    note=f"{paths.EVALUATE_METRICS_FILE} has no baselines: the baseline part of the gate "
                         "was skipped")
    best = max(baselines, key=baselines.__getitem__)
    if accuracy <= baselines[best]:
        return Gate(False, f"test accuracy {accuracy:.4f} does not beat the best baseline {best} "
                           f"({baselines[best]:.4f}; register.require_beat_baseline)")
    return Gate(True, f"test accuracy {accuracy:.4f} beats the best baseline {best} ({baselines[best]:.4f}) "
                      f"and register.min_accuracy {min_accuracy:.4f}")


def check_metrics_belong(metrics: dict[str, Any], train_run_id: str, model_sha256: str) -> None:
    """Refuse test metrics of another model: a register after a retrain without evaluate would lie."""
    again = "run `python -m pipeline evaluate` (or `dvc repro`) first"
    where = paths.EVALUATE_METRICS_FILE
    recorded_run, recorded_sha = metrics.get("mlflow_run_id"), metrics.get("model_sha256")
    if recorded_run is None and recorded_sha is None:
        raise PipelineError(f"{where} does not say which model it evaluated; {again}")
    if recorded_run is not None and recorded_run != train_run_id:
        raise PipelineError(f"{where} belongs to train run {recorded_run}, not to {train_run_id} "
                            f"({paths.TRAIN_RUN_FILE}); {again}")
    if recorded_sha is not None and recorded_sha != model_sha256:
        raise PipelineError(f"{where} belongs to another {paths.MODEL_FILE} (sha256 {str(recorded_sha)[:12]}, "
                            f"the file is {model_sha256[:12]}); {again}")


def version_tags(metrics: dict[str, Any], record: dict[str, Any], commit: str | None) -> dict[str, Any]:
    """The facts a person reads on a version (DVC experiment tags are added from the tracking context).

    Small on purpose: the hyperparameters and every test metric are on the train run.
    """
    return {"test_accuracy": f"{float(metrics['accuracy']):.6g}",
            "data_fingerprint": (record.get("data") or {}).get("fingerprint"),
            "git_commit": commit,
            "search_run_id": record.get("search_run_id"),
            "train_run_id": record["run_id"]}


def run(params, args) -> int:  # noqa: ANN001 - Params / argparse.Namespace
    from pipeline.evaluation.model_io import file_sha256
    from pipeline.tracking.api import read_train_run

    record = read_train_run(paths.TRAIN_RUN_FILE)
    metrics = read_handoff(paths.EVALUATE_METRICS_FILE, producer="evaluate", required="accuracy")
    data = record.get("data") or {}
    if "input_shape" not in data or "num_classes" not in data:
        raise PipelineError(f"{paths.TRAIN_RUN_FILE}: no data description; run `python -m pipeline train` again")
    check_metrics_belong(metrics, record["run_id"], file_sha256(paths.MODEL_FILE))
    from pipeline.data.store import load_meta

    require_same_data(data.get("fingerprint"), load_meta(paths.PROCESSED_DIR).get("fingerprint"),
                      what=str(paths.MODEL_FILE), data=str(paths.PROCESSED_DIR),
                      fix="rerun `python -m pipeline train` and `evaluate` on this data (or `dvc repro`)")
    gate = check_gate(metrics, params.register.min_accuracy, params.register.require_beat_baseline)
    if gate.note:
        print(f"note: {gate.note}")

    from pipeline.evaluation.model_io import load_model_file, model_fingerprint
    from pipeline.model.export import input_kind
    from pipeline.tracking.api import CHALLENGER, open_tracker
    from pipeline.tracking.context import context_tags, git_commit

    name = params.register.model_name
    tracker = open_tracker(params)
    model = load_model_file(paths.MODEL_FILE)
    content_hash = model_fingerprint(model)
    version = tracker.find_version_by_hash(name, content_hash)
    if version is not None:
        print(f"{paths.MODEL_FILE} holds the same architecture and weights as {name} version {version.version}; "
              "reusing it (no new version)")
    else:
        version = tracker.register_model(
            model, name=name, run_id=record["run_id"], input_shape=tuple(data["input_shape"]),
            num_classes=int(data["num_classes"]), content_hash=content_hash, metadata=data,
            input_kind=input_kind(model), input_dtype=str(model.inputs[0].dtype),
            tags={**version_tags(metrics, record, git_commit()), **context_tags()})
        print(f"registered {name} version {version.version} from run {record['run_id']}")
    tracker.set_version_tags(version, {"gate": "passed" if gate.passed else "failed",
                                                      "gate_reason": gate.reason})
    if gate.passed:
        tracker.set_alias(version, CHALLENGER)
        print(f"alias {CHALLENGER} -> {name} version {version.version} ({version.address}): {gate.reason}; "
              "`python -m pipeline promote` compares it with the champion")
    else:
        current = tracker.version_for_alias(name, CHALLENGER)
        stays = f"{CHALLENGER} stays version {current.version}" if current else f"{name} has no {CHALLENGER}"
        print(f"gate failed: {gate.reason}; {name} version {version.version} registered without an alias, {stays}")

    # the train run's id is evaluate's metric already: once is enough for `dvc exp show`
    out = {"name": name, "version": version.version, "gate": "passed" if gate.passed else "failed",
           "alias": CHALLENGER if gate.passed else None}
    paths.REGISTER_DIR.mkdir(parents=True, exist_ok=True)
    write_json_atomic(paths.REGISTERED_MODEL_FILE, out)
    return 0
