"""Command line: ``python -m pipeline <command>``.

Parses arguments and validates ``params.yaml`` *before* importing a stage, so a bad file
or flag fails in about a second, without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from pipeline import __version__
from pipeline.errors import PipelineError, shorten

# An error line is cut here: it names a file or key and what is allowed, never a whole value.
MAX_ERROR_LINE = 1000
# Failures of the machine, not of the code: one line naming the file, not a traceback.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)


class Parser(argparse.ArgumentParser):
    """argparse with the pipeline's error format: one ``error:`` line, exit code 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {shorten(message.removeprefix('argument '), 300)} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """argparse type for counts that must be given as 1 or more (0 is not "use the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {shorten(text, 40)!r}; allowed: a whole number, 1 or more") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; allowed: 1 or more")
    return value


@dataclass(frozen=True)
class Command:
    name: str
    target: str  # "module:function", imported only when the command runs
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def _validate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stamp", metavar="FILE",
                        help="write a constant line to FILE instead of printing the parameters (the DVC stage "
                             "`validate`: every stage depends on it, so a bad params.yaml stops `dvc repro` "
                             "before DVC removes any output, while a good change leaves the file, and so the "
                             "other stages, unchanged)")


def _tune_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="run KerasTuner's distributed mode with N workers on this machine "
                             "(overrides tune.workers)")


def _promote_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-improvement", type=float, metavar="X",
                        help="required test-accuracy gain over the champion (default: promote.min_improvement)")
    parser.add_argument("--dry-run", action="store_true", help="decide and print, but move no alias")


def _predict_args(parser: argparse.ArgumentParser) -> None:
    # the forms depend on mlflow.backend (read later): a wrong one is refused with the forms it takes
    parser.add_argument("--model", default=None, metavar="URI",
                        help="a registered model, as the tracking backend addresses it (MLflow's model URI with "
                             "an alias or a version), or a .keras file (default: the champion of "
                             "register.model_name)")
    parser.add_argument("--top", type=positive_int, default=1, metavar="K", help="show the K most likely classes")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders of images")


COMMANDS: tuple[Command, ...] = (
    Command("validate", "pipeline.cli:validate", "check params.yaml and print the resolved parameters",
            _validate_args),
    Command("preprocess", "pipeline.stages.preprocess:run", "load the data source, split and normalize it"),
    Command("tune", "pipeline.stages.tune:run", "run the hyperparameter search, every trial in MLflow", _tune_args),
    Command("train", "pipeline.stages.train:run", "retrain the best hyperparameters into models/model.keras"),
    Command("ablate", "pipeline.stages.ablate:run", "retrain the best configuration with one change at a time, "
            "several seeds each, and test each change"),
    Command("evaluate", "pipeline.stages.evaluate:run", "evaluate the trained model on the test split"),
    Command("register", "pipeline.stages.register:run", "register the model (MLflow registry) with alias challenger"),
    Command("report", "pipeline.stages.report:run", "turn the trials into answers to the guide's questions"),
    Command("promote", "pipeline.stages.promote:run", "make the challenger champion if it wins on the test split",
            _promote_args),
    Command("rollback", "pipeline.stages.promote:rollback", "move the champion alias back to the previous champion"),
    Command("predict", "pipeline.stages.predict:run", "classify image files with a registered model", _predict_args),
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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

    if getattr(args, "stamp", None):
        from pipeline.atomic import write_text_atomic

        write_text_atomic(args.stamp, "params.yaml: valid\n")
        return 0
    print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False).rstrip())
    print(f"{args.params}: OK", file=sys.stderr)
    return 0


def _load_target(target: str) -> Callable[..., int | None]:
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _print_error_lines(lines: list[str]) -> None:
    """The ``error:`` lines, last on the terminal: stdout flushed first, redacted and bounded."""
    from pipeline.tracking.redact import redact

    sys.stdout.flush()
    for line in lines:
        text = redact(" ".join(str(line).splitlines()))
        if len(text) > MAX_ERROR_LINE:
            text = f"{text[:MAX_ERROR_LINE]}... ({len(text) - MAX_ERROR_LINE} more characters)"
        print(f"error: {text}", file=sys.stderr)
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.tracking.redact import redacted_output

    with redacted_output():  # no password from a tracking URI in anything this process prints
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
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
        _print_error_lines(error.lines)
        return error.exit_code
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        _print_error_lines([f"{error.filename or 'output'}: {error.strerror}"])
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, run the command again to resume", file=sys.stderr)
        return 130
    return int(result or 0)
