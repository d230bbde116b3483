"""Command line: ``python -m pipeline <command>``.

Parses arguments and validates ``params.yaml`` *before* importing a stage, so a bad file
or flag fails in about a second, without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline import __version__
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module:function", imported only when the command runs
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def _tune_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, metavar="N",
                        help="run KerasTuner's distributed mode with N workers on this machine "
                             "(overrides tune.workers)")


def _promote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-improvement", type=float, metavar="X",
                        help="required test-accuracy gain over the champion (default: promote.min_improvement)")
    parser.add_argument("--dry-run", action="store_true", help="decide and print, but move no alias")


def _predict_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="URI",
                        help="MLflow model URI, e.g. models:/digits-cnn@champion, or a .keras file "
                             "(default: models:/<register.model_name>@champion)")
    parser.add_argument("--top", type=int, default=1, metavar="K", help="show the K most likely classes")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")


COMMANDS: tuple[Command, ...] = (
    Command("validate", "pipeline.cli:validate", "check params.yaml and print the resolved parameters"),
    Command("preprocess", "pipeline.stages.preprocess:run", "load the data source, split and normalize it"),
    Command("tune", "pipeline.stages.tune:run", "run the hyperparameter search, every trial in MLflow", _tune_args),
    Command("train", "pipeline.stages.train:run", "retrain the best hyperparameters into models/model.keras"),
    Command("evaluate", "pipeline.stages.evaluate:run", "evaluate the trained model on the test split"),
    Command("register", "pipeline.stages.register:run", "register the model in MLflow with alias challenger"),
    Command("report", "pipeline.stages.report:run", "turn the trials into answers to the guide's questions"),
    Command("promote", "pipeline.stages.promote:run", "make the challenger champion if it wins on the test split",
            _promote_args),
    Command("rollback", "pipeline.stages.promote:rollback", "move the champion alias back to the previous champion"),
    Command("predict", "pipeline.stages.predict:run", "classify image files with a registered model", _predict_args),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="CNN tuning pipeline: preprocess -> tune -> train -> evaluate -> register "
                    "(run them all with `dvc repro`).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        child = sub.add_parser(command.name, help=command.help, description=command.help)
        child.add_argument("--params", default="params.yaml", metavar="FILE",
                           help="parameters file (default: %(default)s)")
        child.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="override one parameter for this run, e.g. -S tune.max_epochs=3 (repeatable)")
        if command.add_arguments:
            command.add_arguments(child)
        child.set_defaults(_command=command)
    return parser


def validate(params, args: argparse.Namespace) -> int:  # noqa: ANN001 - Params, imported lazily
    import yaml

    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False).rstrip())
    print(f"{args.params}: OK", file=sys.stderr)
    return 0


def _load_target(target: str) -> Callable[..., int | None]:
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:  # a real command line: a stage may restart itself with the same arguments
        args.restart_argv = [sys.executable, "-m", "pipeline", *sys.argv[1:]]
    # Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from pipeline.config import load_params, parse_override

        overrides = dict(parse_override(text) for text in args.overrides)
        params = load_params(args.params, overrides)
        result = _load_target(args._command.target)(params, args)
    except PipelineError as error:
        for line in error.lines:
            print(f"error: {line}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 130
    return int(result or 0)
