"""One name, one place: each pluggable kind is a registry that validation, the model, the tuner factory,
the data stage, the report and the ablation read.

Adding a schedule with a knob, a tuner or a data source is one module plus its registration: each is
shown here with a module written to a temp folder (named in ``PIPELINE_PLUGINS`` where it must be
known before ``params.yaml`` is validated). Unknown names fail validation in one line listing the known
ones, and DESIGN.md's "Registries" and "How to add each kind" stay true.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline import registry
from pipeline.config import ConfigError, parse_params
from pipeline.registry import ARCHITECTURES, SCHEDULES, SOURCES, TUNERS, Knob, Registry, Schedule, TunerKind
from tests.conftest import run_cli, write_params

REPO = Path(__file__).resolve().parents[1]

SCHEDULE_PLUGIN = """
    from pipeline.registry import SCHEDULES, Knob, Schedule

    DECAY_END = Knob("decay_end", "float", 0.1, ge=0.0, le=1.0)


    def linear_decay(values, epoch, total):
        lr = float(values["learning_rate"])
        return lr * (1.0 - (1.0 - float(values["decay_end"])) * min(epoch / total, 1.0))


    SCHEDULES.register(Schedule("linear_decay", linear_decay, (DECAY_END,), needs_total=True))
"""

TUNER_PLUGIN = """
    import keras_tuner as kt

    from pipeline.registry import TUNERS, TunerKind


    class PluginSearch(kt.RandomSearch):
        pass


    TUNERS.register(TunerKind("plugin_random", reads=("objective", "max_epochs", "max_trials")))
    TUNERS.implement("plugin_random", lambda tune, hypermodel: (PluginSearch, {"max_trials": tune.max_trials}))
"""

SOURCE_PLUGIN = """
    import numpy as np

    from pipeline.data.sources.base import RawDataset
    from pipeline.registry import SOURCES, SourceKind


    class Bars:
        name = "bars"

        def load(self, data):
            rng = np.random.default_rng(0)
            y = np.repeat(np.arange(2), 60)
            x = rng.uniform(0, 100, (120, 8, 8, 1)).astype("float32")
            x[y == 1, :, :4] = 255.0
            return RawDataset(x=x, y=y, class_names=["plain", "barred"], pixel_max=255.0, dataset="bars")


    SOURCES.register(SourceKind("bars"))
    SOURCES.implement("bars", Bars())
"""

# The model side of the schedule plugin, run in the process where the plugin registered first.
USE_SCHEDULE = """
    import json

    import keras_tuner
    import numpy as np

    from pipeline.config import parse_params
    from pipeline.ablation.plan import GRAPH_FREE_KEYS
    from pipeline.model.hypermodel import CNNHyperModel
    from pipeline.report.conditions import is_active
    from tests.tune_fixtures import TINY_SPACE

    space = parse_params({"search_space": {**TINY_SPACE, "init": "he_normal", "optimizer": "sgd",
                                           "learning_rate": 0.1, "lr_schedule": "linear_decay",
                                           "decay_end": 0.5}}).search_space
    hypermodel = CNNHyperModel(space, (8, 8, 1), 3, seed=1, total_epochs=4)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    model.run_eagerly = True
    rng = np.random.default_rng(0)
    history = hypermodel.fit(hp, model, rng.normal(size=(16, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 16),
                             epochs=4)
    print(json.dumps({"rates": history.history["learning_rate"], "knob": hp.values["decay_end"],
                      "keys": list(type(space).model_fields), "graph_free": "decay_end" in GRAPH_FREE_KEYS,
                      "active": [is_active("decay_end", {"lr_schedule": s}) for s in ("linear_decay", "cosine")]}))
"""


def write_module(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def plugin_env(folder: Path, *modules: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(REPO)]), registry.PLUGINS_VARIABLE: ",".join(modules)}


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Import a module written to a temp folder, in this process; its entries are removed afterwards."""
    folder = tmp_path / "plugins"
    added: list[tuple[Registry, str]] = []

    def load(name: str, text: str, registered: list[tuple[Registry, str]]) -> object:
        write_module(folder, name, text)
        monkeypatch.syspath_prepend(str(folder))
        added.extend(registered)
        return importlib.import_module(name)

    yield load
    for kind, name in added:
        kind.unregister(name)
    for module in list(sys.modules):
        if module.startswith("plugin_"):
            del sys.modules[module]


# ------------------------------------------------------------------ adding one of each kind
def test_a_schedule_with_a_knob_is_one_module(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_module(folder, "linear_decay", SCHEDULE_PLUGIN)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"search_space": {"lr_schedule": {"choices": ["cosine", "linear_decay"]},
                                                       "decay_end": {"min": 0.05, "max": 0.5}}}))

    # validation knows the schedule and its knob (with the declared bounds) once the module is registered
    ok = run_cli(["validate", "--params", str(params)], cwd=tmp_path, env=plugin_env(folder, "linear_decay"))
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["search_space"]["decay_end"] == {"min": 0.05, "max": 0.5, "sampling": "linear"}
    params.write_text(yaml.safe_dump({"search_space": {"lr_schedule": "linear_decay", "decay_end": 2.0}}))
    bad = run_cli(["validate", "--params", str(params)], cwd=tmp_path, env=plugin_env(folder, "linear_decay"))
    assert bad.returncode == 2 and "search_space.decay_end: 2.0 is out of range; allowed: >= 0 and <= 1" in bad.stderr

    # the model trains at its rates; the report and the ablation know where its knob acts
    script = write_module(tmp_path, "use_schedule", USE_SCHEDULE)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, env={**os.environ, **plugin_env(folder, "linear_decay")})
    assert result.returncode == 0, result.stderr
    used = json.loads(result.stdout.strip().splitlines()[-1])
    assert used["rates"] == pytest.approx([0.1, 0.0875, 0.075, 0.0625], rel=1e-6)
    assert used["knob"] == 0.5 and "decay_end" in used["keys"] and used["graph_free"]
    assert used["active"] == [True, False]


def test_without_its_module_the_schedule_is_unknown_in_one_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"search_space": {"lr_schedule": "linear_decay"}}))
    result = run_cli(["validate", "--params", str(params)], cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {params}: search_space.lr_schedule: 'linear_decay' is not allowed; allowed: constant, step, "
        "exponential, cosine, cosine_restarts, warmup_cosine (got 'linear_decay')"]


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    result = run_cli(["validate", "--params", str(params)], cwd=tmp_path,
                     env={"PYTHONPATH": str(REPO), registry.PLUGINS_VARIABLE: "no_such_plugin"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "error: PIPELINE_PLUGINS: cannot import 'no_such_plugin' (ModuleNotFoundError: No module named "
        "'no_such_plugin'); allowed: importable module names, comma-separated"]


def test_a_tuner_is_one_module(tmp_path: Path, plugin) -> None:
    from pipeline.tuning.tuners import TrackedTunerMixin, expected_trials, make_tuner
    from tests.tune_fixtures import hypermodel, tiny_data, tiny_params

    module = plugin("plugin_tuner", TUNER_PLUGIN, [(TUNERS, "plugin_random")])
    params = tiny_params(tmp_path, tuner="plugin_random", max_trials=2, max_epochs=1)
    assert params.tune.tuner == "plugin_random" and expected_trials(params.tune) == 2

    tuner = make_tuner(params.tune, hypermodel(params), seed=1, project_name="plugin")
    assert isinstance(tuner, module.PluginSearch) and isinstance(tuner, TrackedTunerMixin)
    x, y, x_val, y_val = tiny_data(120)
    tuner.search(x, y, validation_data=(x_val, y_val), epochs=1)
    statuses = [trial.status for trial in tuner.oracle.trials.values()]
    assert statuses == ["COMPLETED", "COMPLETED"]  # the plugin's search ran its max_trials, tracked


def test_a_data_source_is_one_module(project: Path) -> None:
    folder = project.parent / "plugins"
    write_module(folder, "bars_source", SOURCE_PLUGIN)
    write_params(project, data={"source": "bars"})
    result = run_cli(["preprocess"], cwd=project, env=plugin_env(folder, "bars_source") | {
        "PYTHONPATH": os.pathsep.join([str(folder), str(project)])})
    assert result.returncode == 0, result.stderr
    meta = json.loads((project / "data" / "processed" / "meta.json").read_text())
    assert meta["dataset"] == "bars" and meta["class_names"] == ["plain", "barred"]

    unknown = run_cli(["validate"], cwd=project)
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == ["error: params.yaml: data.source: unknown data source; allowed: digits, "
                                           "keras, images (got 'bars')"]


# ------------------------------------------------------------------ unknown names
@pytest.mark.parametrize(("section", "key", "kind"), [("tune", "tuner", TUNERS), ("data", "source", SOURCES),
                                                      ("search_space", "lr_schedule", SCHEDULES),
                                                      ("search_space", "architecture", ARCHITECTURES)])
def test_an_unknown_name_is_one_line_listing_the_known_ones(section: str, key: str, kind: Registry) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({section: {key: "nope"}})
    [line] = caught.value.lines
    assert line.startswith(f"params.yaml: {section}.{key}: ") and line.endswith("(got 'nope')")
    assert f"allowed: {', '.join(kind.names())} (got" in line


def test_validate_names_the_known_tuners(project: Path) -> None:
    write_params(project, tune={"tuner": "nope"})
    result = run_cli(["validate"], cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: params.yaml: tune.tuner: unknown tuner; allowed: bohb, hyperband, "
                                          "random, bayesian (got 'nope')"]


def test_a_lookup_outside_validation_names_the_key_and_the_known_ones() -> None:
    from pipeline.model.schedules import learning_rate_at

    with pytest.raises(ValueError, match=r"^search_space.lr_schedule: unknown lr_schedule 'nope'; allowed: constant, "):
        learning_rate_at({"learning_rate": 0.1, "lr_schedule": "nope"}, 0)


# ------------------------------------------------------------------ the registry itself
def test_every_declared_name_is_implemented_and_nothing_else() -> None:
    importlib.import_module("pipeline.tuning.tuners")
    importlib.import_module("pipeline.data.sources")
    importlib.import_module("pipeline.model.architectures")
    for kind in (TUNERS, SOURCES, ARCHITECTURES):
        assert sorted(kind.implemented()) == sorted(kind.names()), kind


def test_a_name_is_declared_once_and_implemented_only_when_declared() -> None:
    kinds: Registry[TunerKind] = Registry("tuner", "tune.tuner")
    kinds.register(TunerKind("a", ()))
    with pytest.raises(ValueError, match="registered twice"):
        kinds.register(TunerKind("a", ()))
    with pytest.raises(ValueError, match="unknown tuner 'b'; allowed: a"):
        kinds.implement("b", object())
    with pytest.raises(LookupError, match="declared but not implemented"):
        kinds.implementation("a")


def test_a_knob_shared_by_schedules_must_be_declared_alike() -> None:
    schedules: Registry[Schedule] = Registry("lr_schedule", "search_space.lr_schedule")
    schedules.register(Schedule("a", lambda v, e, t: 0.1, (Knob("floor", "float", 0.1, ge=0.0),)))
    schedules.register(Schedule("b", lambda v, e, t: 0.1, (Knob("floor", "float", 0.1, ge=0.0),)))
    assert list(registry.schedule_knobs(schedules)) == ["floor"]
    assert registry.knob_users(schedules) == {"floor": frozenset({"a", "b"})}
    schedules.register(Schedule("c", lambda v, e, t: 0.1, (Knob("floor", "float", 0.5, ge=0.0),)))
    with pytest.raises(ValueError, match="declares knob 'floor' unlike another schedule"):
        registry.schedule_knobs(schedules)


def test_the_schema_takes_the_knobs_from_the_schedules() -> None:
    from pipeline.config import SearchSpaceConfig

    keys = list(SearchSpaceConfig.model_fields)
    knobs = list(registry.schedule_knobs())
    start = keys.index("lr_schedule") + 1
    assert keys[start:start + len(knobs)] == knobs  # right after lr_schedule, in declaration order
    for knob in registry.schedule_knobs().values():
        assert getattr(SearchSpaceConfig(), knob.name) == knob.parse(knob.default)


# ------------------------------------------------------------------ DESIGN.md stays true
DESIGN = (REPO / "DESIGN.md").read_text(encoding="utf-8")


def test_design_lists_exactly_the_registered_names() -> None:
    listed = {line.split(":")[0].removeprefix("- "): re.findall(r"`([^`]+)`", line)
              for line in DESIGN.split("Registered names (built in):")[1].split("\n\n")[1].splitlines()}
    assert listed == {"schedules": list(SCHEDULES.names()), "tuners": list(TUNERS.names()),
                      "data sources": list(SOURCES.names()), "architectures": list(ARCHITECTURES.names())}


def test_design_names_only_paths_and_modules_that_exist() -> None:
    quoted = set(re.findall(r"`([^`\s]+)`", DESIGN))
    paths = {q for q in quoted if re.fullmatch(r"(pipeline|tests)/[\w/.]*", q)}
    modules = {q for q in quoted if re.fullmatch(r"pipeline(\.\w+)+", q)}
    assert len(paths) >= 10 and len(modules) >= 3  # the check reads what it should
    assert [p for p in sorted(paths) if not (REPO / p).exists()] == []
    assert [m for m in sorted(modules) if not resolves(m)] == []


def resolves(dotted: str) -> bool:
    """``pipeline.a.b`` is a module, or a name (``pipeline.a.B.c``) in the longest module it starts with."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_design_how_to_names_what_the_code_has() -> None:
    from pipeline.model import architectures
    from pipeline.tuning import tuners

    how_to = DESIGN.split("## How to add each kind")[1]
    for name in ("Knob", "Schedule", "TunerKind", "SourceKind", "ArchitectureKind", "PLUGINS_VARIABLE"):
        assert hasattr(registry, name)
    assert registry.PLUGINS_VARIABLE in how_to and "Registry.implement" in DESIGN
    assert hasattr(architectures, "Family") and hasattr(tuners, "make_tuner")
    for declared_in, kinds in (("pipeline/lr_schedules.py", "SCHEDULES.register"),
                               ("pipeline/data/sources/__init__.py", "SOURCES.implement"),
                               ("pipeline/model/architectures.py", "ARCHITECTURES.implement"),
                               ("pipeline/tuning/tuners.py", "TUNERS.implement")):
        assert declared_in in how_to and kinds in (REPO / declared_in).read_text()
