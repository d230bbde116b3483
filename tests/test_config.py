"""params.yaml schema: the shipped file loads; each kind of mistake gives exit 2 and the key path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import Choice, Fixed, Range, load_params, parse_params
from pipeline.errors import ConfigError
from tests.conftest import REPO, run_cli, write_params


def test_shipped_params_load_and_search_the_guides_dimensions() -> None:
    params = load_params(REPO / "params.yaml")
    space = params.search_space
    assert params.data.source == "digits"
    assert set(space.init.choices) >= {"zeros", "glorot_uniform", "he_normal"}
    assert isinstance(space.learning_rate, Range) and space.learning_rate.sampling == "log"
    assert set(space.lr_schedule.choices) == {"constant", "step", "exponential", "cosine", "cosine_restarts",
                                              "warmup_cosine"}
    assert params.tune.tuner == "hyperband" and params.tune.factor == 3


@pytest.mark.parametrize(
    ("sections", "key", "fragment"),
    [
        ({"tune": {"factor": 1}}, "tune.factor", "greater than or equal to 2"),
        ({"tune": {"max_epochs": "many"}}, "tune.max_epochs", "valid integer"),
        ({"tune": {"factr": 3}}, "tune.factr", "unknown key; allowed keys: tuner, objective"),
        ({"data": {"source": "imagenet"}}, "data.source", "'digits', 'keras' or 'images'"),
        ({"search_space": {"init": {"choices": ["he_normal", "xavier"]}}}, "search_space.init",
         "'xavier' is not allowed; allowed: zeros"),
        ({"search_space": {"dropout": {"min": 0.0, "max": 1.5}}}, "search_space.dropout", "out of range"),
        ({"search_space": {"learning_rate": {"min": 0.0, "max": 0.1, "sampling": "log"}}},
         "search_space.learning_rate", "out of range"),
        ({"search_space": {"optimizer": {"min": 1, "max": 2}}}, "search_space.optimizer", "numeric key"),
        ({"split": {"validation": 0.45, "test": 0.45}}, "split.validation + split.test", "below 0.8"),
        ({"seed": -1}, "seed", "greater than or equal to 0"),
    ],
)
def test_bad_values_exit_2_with_key_path(project: Path, sections: dict, key: str, fragment: str) -> None:
    write_params(project, **sections)
    result = run_cli(["preprocess"], cwd=project)
    assert result.returncode == 2, result.stderr
    assert f"{key}" in result.stderr and fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data/processed").exists()  # failed before doing anything


def test_several_problems_give_one_line_each() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({"tune": {"factor": 0, "objective": "auc"}, "train": {"epochs": 0}})
    lines = caught.value.lines
    assert len(lines) == 3
    assert {line.split(": ")[1] for line in lines} == {"tune.factor", "tune.objective", "train.epochs"}


def test_hyperparameter_forms() -> None:
    space = parse_params({"search_space": {
        "init": "he_normal",
        "batch_size": {"choices": [16, 32]},
        "learning_rate": {"min": "1e-4", "max": 0.1, "sampling": "log"},
        "blocks": {"min": 1, "max": 3},
    }}).search_space
    assert space.init == Fixed("he_normal") and not space.init.searched
    assert space.batch_size == Choice((16, 32)) and space.batch_size.searched
    assert space.learning_rate == Range(1e-4, 0.1, sampling="log")
    assert space.blocks == Range(1, 3, step=1)


def test_invalid_yaml_and_missing_file(project: Path) -> None:
    (project / "params.yaml").write_text("tune: [unclosed\n")
    result = run_cli(["validate"], cwd=project)
    assert result.returncode == 2 and "not valid YAML at line" in result.stderr
    result = run_cli(["validate", "--params", "nope.yaml"], cwd=project)
    assert result.returncode == 2 and "nope.yaml: file not found" in result.stderr


def test_command_line_overrides(project: Path) -> None:
    result = run_cli(["validate", "-S", "tune.max_epochs=3", "-S", "search_space.init=zeros"], cwd=project)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["tune"]["max_epochs"] == 3 and shown["search_space"]["init"] == "zeros"
    result = run_cli(["validate", "-S", "tune.factor"], cwd=project)
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr


def test_validation_happens_before_tensorflow_is_imported(project: Path) -> None:
    write_params(project, tune={"factor": 1})
    code = ("import sys; from pipeline.cli import main; rc = main(['tune']); "
            "assert rc == 2, rc; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('ok')")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_help_lists_every_command(project: Path) -> None:
    result = run_cli(["--help"], cwd=project)
    assert result.returncode == 0
    for command in ("preprocess", "tune", "train", "evaluate", "register", "report", "promote", "rollback",
                    "predict"):
        assert command in result.stdout
        assert run_cli([command, "--help"], cwd=project).returncode == 0
