"""The tracking seam: no file outside ``pipeline/tracking/`` knows MLflow, and a second backend is one module
plus ``mlflow.backend`` in params.yaml.

The second backend here is an in-memory tracker written to a temp module: registered like a plugin
(``TRACKING_BACKENDS.register`` + ``implement``), selected by one params.yaml line, it carries the
real register -> promote -> rollback -> predict flow (and evaluate's logging to the train run)
without MLflow ever opening its store.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import write_params

from pipeline.cli import main
from pipeline.devtools import tracking_seam
from pipeline.registry import TRACKING_BACKENDS, TrackingBackend

MEMORY_BACKEND = '''
"""A tracker that keeps everything in this process's memory (runs, model versions, aliases)."""
import itertools
from contextlib import contextmanager

from pipeline.errors import PipelineError
from pipeline.tracking.api import ModelRef, RunRef

STORE = {"runs": {}, "versions": {}, "aliases": {}}
_ids = itertools.count(1)


class Run:
    def __init__(self, name):
        self.ref = RunRef(f"run{next(_ids)}", name, "memory")
        STORE["runs"][self.ref.id] = self.record = {"metrics": {}, "tags": {}, "artifacts": [], "status": "RUNNING"}

    def log_epoch(self, epoch, logs):
        self.record["metrics"].update({f"{k}@{epoch}": float(v) for k, v in logs.items()})

    def log_summary(self, metrics, tags=None):
        self.record["metrics"].update(metrics)
        self.record["tags"].update(tags or {})

    def log_artifact(self, path):
        self.record["artifacts"].append(str(path))


class MemoryTracker:
    backend = "memory"

    def __init__(self, params, location=None):
        self.location = location or "memory"

    def connect(self):
        return self

    @contextmanager
    def start_train_run(self, hparams, tags):
        run = Run("train")
        run.record["tags"].update(tags)
        yield run
        run.record["status"] = "FINISHED"

    def log_to_run(self, run_id, metrics, artifacts=None, tags=None):
        if run_id not in STORE["runs"]:
            raise PipelineError(f"train run {run_id} is not in the memory store")
        STORE["runs"][run_id]["metrics"].update(metrics)
        STORE["runs"][run_id]["artifacts"] += [str(p) for p in artifacts or []]

    def log_report(self, run_id, report_dir):
        return False

    def _ref(self, name, version):
        entry = STORE["versions"][(name, version)]
        return ModelRef(name, f"memory:{name}/{version}", version=version, run_id=entry["run_id"],
                        tags=dict(entry["tags"]))

    def find_version_by_hash(self, name, content_hash):
        found = [v for (n, v), e in STORE["versions"].items() if n == name and e["hash"] == content_hash]
        return self._ref(name, found[-1]) if found else None

    def register_model(self, model, *, name, run_id, input_shape, num_classes, content_hash, metadata, tags,
                       input_kind, input_dtype):
        version = str(1 + sum(n == name for n, _ in STORE["versions"]))
        STORE["versions"][(name, version)] = {
            "model": model, "run_id": run_id, "hash": content_hash, "shape": tuple(input_shape),
            "data": dict(metadata), "kind": input_kind, "tags": {k: str(v) for k, v in tags.items()}}
        return self._ref(name, version)

    def set_version_tags(self, model, tags):
        STORE["versions"][(model.name, model.version)]["tags"].update({k: str(v) for k, v in tags.items()})

    def set_alias(self, model, alias):
        STORE["aliases"][(model.name, alias)] = model.version

    def version_for_alias(self, name, alias):
        version = STORE["aliases"].get((name, alias))
        return self._ref(name, version) if version else None

    def model_at_alias(self, name, alias):
        return ModelRef(name, f"memory:{name}@{alias}", alias=alias)

    def parse_model(self, text):
        name, _, alias = text.removeprefix("memory:").partition("@")
        if not text.startswith("memory:") or not alias:
            raise PipelineError(f"--model {text}: expected memory:<name>@<alias> or a .keras file")
        return self.model_at_alias(name, alias)

    def _entry(self, model):
        version = model.version or STORE["aliases"][(model.name, model.alias)]
        return STORE["versions"][(model.name, version)]

    def model_input_shape(self, model):
        return self._entry(model)["shape"]

    def model_data(self, model):
        return self._entry(model)["data"]

    def model_input_kind(self, model):
        return self._entry(model)["kind"]

    def load_model(self, model):
        return self._entry(model)["model"]
'''


@pytest.fixture
def memory_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The in-memory backend, from a module in a temp folder, registered as ``memory`` for this test."""
    # the project fixture's new MLflow store: the tests check that this backend never creates one
    (tmp_path / "project" / "mlflow.db").unlink(missing_ok=True)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "memory_tracker.py").write_text(textwrap.dedent(MEMORY_BACKEND))
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("memory_tracker")
    TRACKING_BACKENDS.register(TrackingBackend("memory", "in this process's memory (a test)"))
    TRACKING_BACKENDS.implement("memory", module.MemoryTracker)
    yield module
    TRACKING_BACKENDS.unregister("memory")
    sys.modules.pop("memory_tracker", None)


# ------------------------------------------------------------------ the count stays at its goal
def test_no_file_outside_tracking_knows_mlflow() -> None:
    """The figure ``python -m pipeline.devtools.tracking_seam`` prints: files a second backend would change."""
    assert tracking_seam.leaks() == {}


def test_the_count_sees_each_kind_of_leak(tmp_path: Path) -> None:
    (tmp_path / "pipeline/stages").mkdir(parents=True)
    (tmp_path / "pipeline/tracking").mkdir()
    for init in ("pipeline", "pipeline/stages", "pipeline/tracking"):
        (tmp_path / init / "__init__.py").write_text('"""Doc mentions models:/x and mlflow: prose."""\n')
    (tmp_path / "pipeline/tracking/store.py").write_text("import mlflow\n")  # inside the seam: fine
    (tmp_path / "pipeline/stages/clean.py").write_text("from pipeline.tracking.api import open_tracker\n")
    (tmp_path / "pipeline/stages/leaky.py").write_text(textwrap.dedent('''
        import mlflow
        from pipeline.tracking import registry
        from pipeline.tracking.store import configure
        URI = "models:/m@champion"
        def f(params):
            return params.mlflow.experiment
    '''))
    found = tracking_seam.leaks(tmp_path)
    assert list(found) == ["pipeline/stages/leaky.py"]
    why = " ".join(found["pipeline/stages/leaky.py"])
    for reason in ("imports mlflow", "pipeline.tracking.registry", "pipeline.tracking.store", "'models:/'",
                   "mlflow settings"):
        assert reason in why


# ------------------------------------------------------------------ a second backend: one config line
def test_an_unknown_backend_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-S", "mlflow.backend=nope"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "mlflow.backend" in errors[0] and "allowed: mlflow" in errors[0]


def test_rollback_runs_on_the_memory_backend(project: Path, memory_backend, capsys) -> None:
    """promote's rollback through the stage, on a store that is not MLflow (no TensorFlow needed)."""
    write_params(project, mlflow={"backend": "memory"})
    from pipeline.config import load_params
    from pipeline.tracking.api import CHAMPION, PREVIOUS_CHAMPION, open_tracker

    tracker = open_tracker(load_params(project / "params.yaml"))
    assert type(tracker) is memory_backend.MemoryTracker
    old, new = (tracker.register_model(None, name="m", run_id="r", input_shape=(8, 8, 1), num_classes=10,
                                       content_hash=h, metadata={}, tags={}, input_kind="raw", input_dtype="uint8")
                for h in ("a", "b"))
    tracker.set_alias(old, PREVIOUS_CHAMPION)
    tracker.set_alias(new, CHAMPION)
    capsys.readouterr()
    assert main(["rollback", "-S", "register.model_name=m"]) == 0
    assert "rolled back: champion m version 2 -> version 1" in capsys.readouterr().out
    assert tracker.version_for_alias("m", CHAMPION).version == "1"
    assert tracker.version_for_alias("m", PREVIOUS_CHAMPION).version == "2"
    assert "rollback.restored_at" in tracker.version_for_alias("m", CHAMPION).tags
    assert not (project / "mlflow.db").exists()


@pytest.mark.slow
def test_evaluate_register_promote_predict_on_the_memory_backend(project: Path, memory_backend, make_images,
                                                                 capsys) -> None:
    """The model's whole way from the train run to predict, with no change outside tracking/ but the
    backend's module and ``mlflow.backend: memory``; MLflow's store is never created."""
    import keras

    from pipeline.config import load_params
    from pipeline.data.store import load_meta, load_split
    from pipeline.model.export import with_input_preprocessing
    from pipeline.tracking.api import open_tracker

    write_params(project, data={"max_samples": 300}, promote={"min_accuracy": 0.0},
                 register={"min_accuracy": 0.0, "require_beat_baseline": False})
    assert main(["preprocess"]) == 0
    write_params(project, mlflow={"backend": "memory"})  # the one line that swaps the backend
    meta = load_meta(project / "data/processed")
    (x, y), validation = (load_split(project / "data/processed", s) for s in ("train", "validation"))
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(tuple(meta["input_shape"])), keras.layers.Flatten(),
                              keras.layers.Dense(meta["num_classes"], activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with open_tracker(load_params(project / "params.yaml")).start_train_run({"learning_rate": 0.01}, {}) as run:
        model.fit(x, y, validation_data=validation, epochs=2, batch_size=32, verbose=0)
        (project / "models").mkdir(exist_ok=True)
        with_input_preprocessing(model, meta["normalization"], pixel_max=meta["pixel_max"]).save(
            project / "models/model.keras")
    (project / "results/train").mkdir(parents=True, exist_ok=True)
    (project / "results/train/run.json").write_text(json.dumps({"run_id": run.ref.id, "data": meta}))

    assert main(["evaluate"]) == 0
    logged = memory_backend.STORE["runs"][run.ref.id]
    assert "test_accuracy" in logged["metrics"] and any(a.endswith("metrics.json") for a in logged["artifacts"])
    capsys.readouterr()
    assert main(["register"]) == 0
    assert "alias challenger -> digits-cnn version 1 (memory:digits-cnn/1)" in capsys.readouterr().out
    assert main(["promote"]) == 0
    assert "promoted: first promotion" in capsys.readouterr().out
    assert memory_backend.STORE["aliases"][("digits-cnn", "champion")] == "1"

    image = make_images(project / "new", {"batch": 1}, size=(16, 16))
    assert main(["predict", str(image)]) == 0  # default: memory:digits-cnn@champion
    assert capsys.readouterr().out.startswith("# memory:digits-cnn@champion")
    assert main(["predict", "--model", "models:/digits-cnn@champion", str(image)]) == 2  # MLflow's form: refused
    assert "expected memory:<name>@<alias>" in capsys.readouterr().err
    assert not (project / "mlflow.db").exists()


def test_ablation_workers_log_under_the_parent_through_the_seam(store: str) -> None:
    """What an ablation worker process gets (``child_settings``, JSON) reopens the parent's child runs."""
    from types import SimpleNamespace

    from mlflow import MlflowClient

    from pipeline.config import Params
    from pipeline.tracking.api import child_runs, open_tracker

    tracker = open_tracker(Params())
    with tracker.start_ablation_run({"seeds": "1"}, {"stage": "ablate"}) as parent:
        settings = json.loads(json.dumps(parent.child_settings()))  # as it travels to a worker
        children = child_runs(settings)
        variant = SimpleNamespace(name="dropout-0.5", dimension="dropout", value=0.5, values={"dropout": 0.5})
        run_id = children.start_run(variant, 7)
        children.log_epoch(run_id, 1, {"val_accuracy": 0.5})
        children.end_run(run_id, {"val_accuracy": 0.6}, "FINISHED")
        parent.finish({}, {}, [])
    run = MlflowClient(store).get_run(run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.ref.id and run.info.status == "FINISHED"
    assert sorted(m.value for m in MlflowClient(store).get_metric_history(run_id, "val_accuracy")) == [0.5, 0.6]
    assert run.data.params["seed"] == "7"
