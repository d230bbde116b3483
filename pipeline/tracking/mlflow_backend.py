"""``pipeline.tracking.contract.Tracker`` on MLflow: runs through ``runs``/``train_run``/``ablation_run``, the
Model Registry through ``registry``, the store through ``store``.

mlflow is imported by those modules, and they are imported here only inside the methods, so that
validating params.yaml (which registers this backend) loads no MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.tracking.contract import ModelRef
from pipeline.tracking.store import configure, resolve_tracking_uri

NAME = "mlflow"
# What ``predict --model`` takes besides a .keras file (MLflow's model URIs).
MODEL_FORMS = ("models:/<name>@<alias>", "models:/<name>/<version>", "runs:/<run id>/model")


def _model_ref(version: Any) -> ModelRef:
    """A ``registry.Version`` as the pipeline's ``ModelRef`` (its address is MLflow's URI)."""
    return ModelRef(version.name, version.uri, version=version.version, run_id=version.run_id,
                    tags=dict(version.tags))


class MlflowTracker:
    """The MLflow store of ``params`` (``mlflow.tracking_uri``, ``MLFLOW_TRACKING_URI``, else mlflow.db)."""

    backend = NAME

    def __init__(self, params: Any, location: str | None = None) -> None:
        self.params = params
        self.experiment = params.mlflow.experiment
        self.location = location or resolve_tracking_uri(params.mlflow.tracking_uri)

    def connect(self) -> MlflowTracker:
        self.location = configure(self.params)
        return self

    # ------------------------------------------------------------------ search
    def open_search(self, search_hash: str, *, tuner: str, resume: bool, params: dict[str, str],
                    tags: dict[str, str], dataset: tuple[Any, Any, str, str] | None = None) -> Any:
        from pipeline.tracking.runs import SearchRun

        return SearchRun.open(self.location, self.experiment, search_hash, tuner=tuner, resume=resume,
                              params=params, tags=tags, dataset=dataset)

    def find_search(self, search_hash: str) -> Any | None:
        from pipeline.tracking.runs import SearchRun

        return SearchRun.find(self.location, self.experiment, search_hash)

    def trial_logger_from_environment(self, tags: dict[str, str] | None = None) -> Any | None:
        from pipeline.tracking.runs import trial_logger_from_environment

        return trial_logger_from_environment(tags)

    def end_run(self, run_id: str, status: str, reason: str) -> None:
        from pipeline.tracking.runs import end_open_run

        end_open_run(self.location, run_id, status, reason)

    # ------------------------------------------------------------------ train run
    def start_train_run(self, hparams: Mapping[str, Any], tags: Mapping[str, str]) -> Any:
        from pipeline.tracking.train_run import TrainRun

        return TrainRun(self.location, hparams, tags)

    def log_to_run(self, run_id: str, metrics: Mapping[str, float], artifacts: list[Path] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        from pipeline.tracking.train_run import log_to_run

        log_to_run(run_id, metrics, artifacts, tags)

    # ------------------------------------------------------------------ ablation
    def start_ablation_run(self, params: Mapping[str, Any], tags: Mapping[str, Any],
                           child_tags: Mapping[str, str] | None = None) -> Any:
        from pipeline.tracking.ablation_run import AblationRun

        return AblationRun(self.location, self.experiment, params, tags, child_tags)

    @staticmethod
    def ablation_children_from(settings: Mapping[str, Any]) -> Any:
        from pipeline.tracking.ablation_run import ChildRuns

        return ChildRuns(**{k: v for k, v in settings.items() if k != "backend"})

    # ------------------------------------------------------------------ report
    def log_report(self, run_id: str | None, report_dir: Path) -> bool:
        from pipeline.tracking.report_artifacts import log_report

        return log_report(self.params, run_id, report_dir)

    # ------------------------------------------------------------------ model registry
    def find_version_by_hash(self, name: str, content_hash: str) -> ModelRef | None:
        from pipeline.tracking import registry

        found = registry.find_version_by_hash(name, content_hash)
        return _model_ref(found) if found is not None else None

    def register_model(self, model: Any, *, name: str, run_id: str, input_shape: tuple[int, ...],
                       num_classes: int, content_hash: str, metadata: Mapping[str, Any],
                       tags: Mapping[str, Any], input_kind: str, input_dtype: str) -> ModelRef:
        from pipeline.tracking import registry

        return _model_ref(registry.register_keras_model(
            model, name=name, run_id=run_id, input_shape=input_shape, num_classes=num_classes,
            content_hash=content_hash, metadata=metadata, tags=tags, input_kind=input_kind, input_dtype=input_dtype))

    def set_version_tags(self, model: ModelRef, tags: Mapping[str, Any]) -> None:
        from pipeline.tracking import registry

        registry.set_version_tags(str(model.name), str(model.version), tags)

    def set_alias(self, model: ModelRef, alias: str) -> None:
        from pipeline.tracking import registry

        registry.set_alias(str(model.name), alias, str(model.version))

    def version_for_alias(self, name: str, alias: str) -> ModelRef | None:
        from pipeline.tracking import registry

        found = registry.version_for_alias(name, alias)
        return _model_ref(found) if found is not None else None

    def model_at_alias(self, name: str, alias: str) -> ModelRef:
        return ModelRef(name, f"models:/{name}@{alias}", alias=alias)

    def parse_model(self, text: str) -> ModelRef:
        from pipeline.tracking import registry

        if not registry.is_model_uri(text):
            raise PipelineError(f"--model {text}: expected {', '.join(MODEL_FORMS)} or a .keras file")
        name, _, alias = text.removeprefix("models:/").partition("@") if text.startswith("models:/") else \
            (None, "", "")
        return ModelRef(name if alias else None, text, alias=alias or None)

    def model_input_shape(self, model: ModelRef) -> tuple[int, ...] | None:
        from pipeline.tracking import registry

        return registry.input_shape(model.address)

    def model_data(self, model: ModelRef) -> dict[str, Any] | None:
        from pipeline.tracking import registry

        return registry.data_metadata(model.address)

    def model_input_kind(self, model: ModelRef) -> str:
        from pipeline.tracking import registry

        return registry.input_kind(model.address)

    def load_model(self, model: ModelRef) -> Any:
        from pipeline.tracking import registry

        return registry.load_keras(model.address)
