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
    # a Hyperband-family tuner (BOHB is Hyperband with model-based sampling)
    assert params.tune.tuner in {"bohb", "hyperband"} and params.tune.factor == 3


@pytest.mark.parametrize(
    ("sections", "key", "fragment"),
    [
        ({"tune": {"factor": 1}}, "tune.factor", "greater than or equal to 2"),
        ({"tune": {"max_epochs": "many"}}, "tune.max_epochs", "valid integer"),
        ({"tune": {"factr": 3}}, "tune.factr", "unknown key; allowed keys: tuner, objective"),
        ({"data": {"source": "imagenet"}}, "data.source", "unknown data source; allowed: digits, keras, images"),
        ({"tune": {"tuner": "nope"}}, "tune.tuner", "unknown tuner; allowed: bohb, hyperband, random, bayesian"),
        ({"tune": {"chief_address": "not an address!!"}}, "tune.chief_address",
         "allowed: a host name or an IP address such as 127.0.0.1"),
        ({"tune": {"chief_address": "http://chief:8000"}}, "tune.chief_address", "allowed: a host name"),
        ({"mlflow": {"experiment": "   "}}, "mlflow.experiment", "must not be empty or blank"),
        ({"tune": {"directory": "/"}}, "tune.directory", "must be a folder of its own"),
        ({"search_space": {"lr_schedule": "nope"}}, "search_space.lr_schedule",
         "'nope' is not allowed; allowed: constant, step, exponential, cosine, cosine_restarts, warmup_cosine"),
        ({"search_space": {"architecture": {"choices": ["vgg", "unet"]}}}, "search_space.architecture",
         "'unet' is not allowed; allowed: plain, vgg, resnet, separable"),
        ({"search_space": {"warmup_epochs": -1}}, "search_space.warmup_epochs", "out of range; allowed: >= 0"),
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
    result = run_cli(["validate", "-S", "tune.max_epochs=3", "-S", "search_space.init=he_normal"], cwd=project)
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["tune"]["max_epochs"] == 3 and shown["search_space"]["init"] == "he_normal"
    result = run_cli(["validate", "-S", "tune.factor"], cwd=project)
    assert result.returncode == 2 and "expected KEY=VALUE" in result.stderr


def test_validation_happens_before_tensorflow_is_imported(project: Path) -> None:
    write_params(project, tune={"factor": 1})
    code = ("import sys; from pipeline.cli import main; rc = main(['tune']); "
            "assert rc == 2, rc; heavy = {'tensorflow', 'keras', 'keras_tuner', 'mlflow'} & set(sys.modules); "
            "assert not heavy, heavy; print('ok')")
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


# ------------------------------------------------------------------ strict loading
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("tune:\n  factor: 3\n  factor: 50\n", "tune.factor: duplicate key at line 3 (first at line 2)"),
        ("tune:\n  factor: 3\ntrain:\n  epochs: 2\ntune:\n  max_epochs: 4\n",
         "tune: duplicate key at line 5 (first at line 1)"),
        ("search_space:\n  init:\n    choices: [zeros]\n    choices: [he_normal]\n",
         "search_space.init.choices: duplicate key at line 4 (first at line 3)"),
    ],
)
def test_duplicate_keys_are_errors_naming_key_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert caught.value.lines == [f"{path}: {fragment}; allowed: each key once"]


def test_merge_keys_may_override_without_being_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    text = "tune:\n  <<: {factor: 3, max_epochs: 4}\n  factor: 5\n"
    path.write_text(text, encoding="utf-8")
    params = load_params(path)
    assert params.tune.factor == 5 and params.tune.max_epochs == 4


def test_a_byte_that_is_not_utf8_is_named_by_offset_even_in_a_comment(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"tune:\n  factor: 3  # caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert caught.value.lines == [f"{path}: byte 24 (line 2) is 0xe9, not UTF-8; allowed: a UTF-8 text file"]


def test_empty_params_run_on_defaults_with_one_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("# nothing set yet\n", encoding="utf-8")
    params = load_params(path, {"tune.factor": 4})
    assert params.tune.factor == 4 and params.tune.max_epochs == 9
    assert capsys.readouterr().err.splitlines() == [f"note: {path} is empty: using the defaults"]


def test_an_alias_bomb_fails_fast_with_a_bounded_message(tmp_path: Path) -> None:
    import time

    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefgh"
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    lines.append(f"tune: {{max_epochs: [{', '.join(['*h'] * 9)}]}}")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert time.perf_counter() - start < 2
    assert len(caught.value.lines) == 1 and len(caught.value.lines[0]) < 300
    assert "anchors and aliases expand to" in caught.value.lines[0], caught.value.lines


def test_a_huge_value_is_cut_in_the_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_params({"tune": {"max_epochs": "9" * 1_000_000}, "data": {"source": ["x"] * 1_000_000}})
    assert all(len(line) < 600 for line in caught.value.lines), [len(line) for line in caught.value.lines]
    assert all("..." in line for line in caught.value.lines)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("tune.max_epochs=[1,", "-S 'tune.max_epochs=[1,': the value is not valid YAML at line 1"),
        ("tune..factor=3", "'tune..factor' has an empty part"),
        ("tune={factor: 3, factor: 4}", "tune.factor: duplicate key"),
    ],
)
def test_malformed_overrides_are_one_line_naming_the_override(project: Path, override: str, fragment: str) -> None:
    result = run_cli(["validate", "-S", override], cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cli_reports_duplicates_and_bad_bytes_in_one_line(project: Path) -> None:
    (project / "params.yaml").write_bytes(b"tune:\n  factor: 3\n  factor: 50\n")
    result = run_cli(["validate"], cwd=project)
    assert result.returncode == 2
    assert result.stderr == ("error: params.yaml: tune.factor: duplicate key at line 3 (first at line 2); "
                             "allowed: each key once\n")
    (project / "params.yaml").write_bytes(b"# \xff\n")
    result = run_cli(["validate"], cwd=project)
    assert result.returncode == 2 and result.stderr.startswith("error: params.yaml: byte 2 (line 1)")
