"""The seam's contract: the pipeline's own tracking types and the ``Tracker`` protocol a backend implements.

Apart from ``pipeline.tracking.api`` (which picks a backend) so that a backend module can import
these without importing the module that imports it: no import cycle. Plain Python, no backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.handoff import read_handoff

# The registry aliases: the last registered model that passed the gate, what predict serves, where
# rollback goes.
CHALLENGER = "challenger"
CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous-champion"
ALIASES = (CHALLENGER, CHAMPION, PREVIOUS_CHAMPION)


@dataclass(frozen=True)
class RunRef:
    """A run of the tracking store: its id (opaque, kept in run.json and best_hparams.json), its name,
    the backend's experiment id; printed as ``name (id)``."""

    id: str
    name: str | None = None
    experiment: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.id})" if self.name else self.id


@dataclass(frozen=True)
class ModelRef:
    """A model in the tracker's registry: a version (``version`` set) or what an alias names.

    ``address`` is how the backend writes it in messages (MLflow: ``models:/digits-cnn/3``).
    """

    name: str | None
    address: str
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.address


@dataclass(frozen=True)
class ModelLocator:
    """What ``predict --model`` names: a ``.keras`` file, or a model of the tracker."""

    text: str
    file: Path | None = None
    model: ModelRef | None = None

    def __str__(self) -> str:
        return self.text


class RunLog(Protocol):
    """An open run of a stage (train, ablation): metrics per epoch, summary numbers, files."""

    ref: RunRef

    def log_epoch(self, epoch: int, logs: Mapping[str, Any]) -> None: ...

    def log_summary(self, metrics: Mapping[str, float], tags: Mapping[str, str] | None = None) -> None: ...

    def log_artifact(self, path: Path) -> None: ...


class Tracker(Protocol):
    """What the pipeline asks of a tracking store; one object per process, from ``tracker_for``.

    Search runs (``pipeline.tuning``), the train run, the ablation's runs, the report's files, and the
    model registry with its aliases. The search's and the ablation's run objects are the ones
    ``pipeline.tuning.tracker.TrialTracker`` and ``pipeline.ablation.runs.AblationTracker`` describe.
    """

    backend: str  # its name in TRACKING_BACKENDS
    location: str  # where the store is, as shown to a person (credentials redacted by the caller)

    def connect(self) -> Tracker:
        """Check the store answers and can be written (in seconds, before TensorFlow loads); returns self."""
        ...

    # ---- a search: a parent run, a child run per trial (any process)
    def open_search(self, search_hash: str, *, tuner: str, resume: bool, params: dict[str, str],
                    tags: dict[str, str], dataset: tuple[Any, Any, str, str] | None = None) -> Any:
        """The search's run, created or (``resume``) found again; it has ``ref``, ``resumed``,
        ``trial_logger(tags)``, ``worker_environment()``, ``finish(...)``, ``abort(...)``."""
        ...

    def find_search(self, search_hash: str) -> Any | None:
        """The newest search run of ``search_hash`` (a worker host joining the chief's search)."""
        ...

    def trial_logger_from_environment(self, tags: dict[str, str] | None = None) -> Any | None:
        """In a worker process: the trial logger ``worker_environment`` described; None when untracked."""
        ...

    def end_run(self, run_id: str, status: str, reason: str) -> None:
        """End a run a previous process left open on purpose, when it is still open."""
        ...

    # ---- the train run, reopened by evaluate
    def start_train_run(self, hparams: Mapping[str, Any], tags: Mapping[str, str]
                        ) -> AbstractContextManager[RunLog]: ...

    def log_to_run(self, run_id: str, metrics: Mapping[str, float], artifacts: list[Path] | None = None,
                   tags: Mapping[str, str] | None = None) -> None: ...

    # ---- the ablation: a parent run and a child per variant and seed (also from worker processes)
    def start_ablation_run(self, params: Mapping[str, Any], tags: Mapping[str, Any],
                           child_tags: Mapping[str, str] | None = None) -> Any:
        """A context manager with ``ref``, ``start_run/log_epoch/end_run``, ``finish`` and
        ``child_settings()``: what ``child_runs`` needs in a worker process (JSON, naming the backend),
        where the backend class's ``ablation_children_from(settings)`` reopens the child runs."""
        ...

    # ---- the report
    def log_report(self, run_id: str | None, report_dir: Path) -> bool: ...

    # ---- the model registry
    def find_version_by_hash(self, name: str, content_hash: str) -> ModelRef | None: ...

    def register_model(self, model: Any, *, name: str, run_id: str, input_shape: tuple[int, ...],
                       num_classes: int, content_hash: str, metadata: Mapping[str, Any],
                       tags: Mapping[str, Any], input_kind: str, input_dtype: str) -> ModelRef: ...

    def set_version_tags(self, model: ModelRef, tags: Mapping[str, Any]) -> None: ...

    def set_alias(self, model: ModelRef, alias: str) -> None: ...

    def version_for_alias(self, name: str, alias: str) -> ModelRef | None: ...

    def model_at_alias(self, name: str, alias: str) -> ModelRef:
        """The (unresolved) model an alias names: predict's default, ``champion``."""
        ...

    def parse_model(self, text: str) -> ModelRef:
        """The backend's own address of a model; a ``PipelineError`` naming the forms it takes otherwise."""
        ...

    def model_input_shape(self, model: ModelRef) -> tuple[int, ...] | None: ...

    def model_data(self, model: ModelRef) -> dict[str, Any] | None: ...

    def model_input_kind(self, model: ModelRef) -> str: ...

    def load_model(self, model: ModelRef) -> Any: ...


def read_train_run(path: Path) -> dict[str, Any]:
    """The train stage's record of its run (``results/train/run.json``), as evaluate and register read it."""
    return read_handoff(path, producer="train", required="run_id")


__all__ = ["ALIASES", "CHALLENGER", "CHAMPION", "PREVIOUS_CHAMPION", "ModelLocator", "ModelRef", "RunLog", "RunRef",
           "Tracker", "read_train_run"]
