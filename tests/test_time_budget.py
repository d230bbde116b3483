"""tune.time_budget / train.time_budget: parsing, validation (one line, exit 2), the clock, progress lines."""

from __future__ import annotations

import copy
import io
import time
from pathlib import Path

import pytest
from conftest import run_cli, write_params

from pipeline.config import parse_params
from pipeline.errors import ConfigError
from pipeline.progress import Progress
from pipeline.time_budget import ALLOWED_FORMS, TimeBudget, clock, parse_duration


@pytest.mark.parametrize("value, seconds", [
    (None, None), (90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("45m", 2700.0), ("2h", 7200.0),
    ("1h30m", 5400.0), ("1h 30m 5s", 5405.0), ("0.5h", 1800.0), (" 2H ", 7200.0),
])
def test_durations_parse_to_seconds(value: object, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [0, -5, "0s", "45x", "m", "", "1d", True, "nan", "inf", float("inf"), [1], "-3m"])
def test_bad_durations_name_the_allowed_forms(value: object) -> None:
    with pytest.raises(ValueError, match="allowed: null, a number of seconds"):
        parse_duration(value)


@pytest.mark.parametrize("section", ["tune", "train"])
def test_a_bad_budget_is_one_line_naming_the_key(section: str) -> None:
    assert getattr(parse_params({section: {"time_budget": "45m"}}), section).time_budget == 2700.0
    assert getattr(parse_params({}), section).time_budget is None  # the default: no budget
    with pytest.raises(ConfigError) as error:
        parse_params({section: {"time_budget": "45 minutes"}})
    assert error.value.lines == [f"params.yaml: {section}.time_budget: allowed: {ALLOWED_FORMS} (got '45 minutes')"]


def test_a_bad_budget_exits_2_before_any_work(project: Path) -> None:
    write_params(project, tune={"time_budget": "soon"})
    result = run_cli(["tune"], cwd=project)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "tune.time_budget" in lines[0] and "45m" in lines[0], result.stderr


def test_the_budget_does_not_define_the_search() -> None:
    from pipeline.tuning.identity import search_hash

    # a rerun with a fresh budget must resume the same search, not start a new one
    assert search_hash(parse_params({"tune": {"time_budget": "1h"}}), "fp") == search_hash(parse_params({}), "fp")


def test_the_clock_is_shared_and_stops_once() -> None:
    budget = TimeBudget(0.05, key="tune.time_budget")
    assert budget.limited and not budget.is_spent() and 0 < budget.left() <= 0.05
    assert copy.deepcopy(budget) is budget and copy.copy(budget) is budget  # KerasTuner copies callbacks
    time.sleep(0.06)
    assert budget.is_spent() and budget.left() == 0.0
    budget.stop("trial 0003 stopped at epoch 2 of 9")
    budget.stop("something later")
    assert budget.what_stopped == "trial 0003 stopped at epoch 2 of 9"
    assert budget.metrics()["time_budget_s"] == 0.05 and budget.metrics()["stopped_by_budget"] == 1.0
    assert budget.describe().startswith("time budget 0:00 (tune.time_budget) spent after 0:00")
    unlimited = TimeBudget(None)
    assert not unlimited.is_spent() and unlimited.left() is None and "time_budget_s" not in unlimited.metrics()
    assert TimeBudget(10, started=time.time() - 20).is_spent()  # a process continuing an older start


def test_progress_lines_count_time_and_cap_the_eta_at_the_budget() -> None:
    assert (clock(75), clock(3725)) == ("1:15", "1:02:05")
    out = io.StringIO()
    progress = Progress(4, "train epoch", stream=out)
    line = progress.step("member 1/2 epoch 1/2: loss 0.5")
    assert line.startswith("train epoch 1/4: member 1/2 epoch 1/2: loss 0.5, elapsed 0:00, ETA ~")
    assert out.getvalue() == line + "\n"
    progress.advance_to(3)  # a member stopped early: its epochs are skipped, not worked
    assert progress.done == 3 and progress.step().startswith("train epoch 4/4: elapsed")
    budget = TimeBudget(3600.0)
    slow = Progress(1000, "ablation run", budget=budget, stream=io.StringIO())
    slow._start -= 100.0  # 100 s for the first run: 999 more would take ~28 hours
    slow.step()
    assert slow.eta() <= 3600.0 and "budget left" in slow.timing()
    # a search continued in a fresh process: elapsed counts from the command's start (the budget's
    # clock), the ETA from this process's own pace (one trial in 10 s, 2 left)
    continued = Progress(3, "trial", budget=TimeBudget(None, started=time.time() - 600), stream=io.StringIO())
    continued._start -= 10.0
    continued.step()
    assert continued.timing().startswith("elapsed 10:0") and 19.0 <= continued.eta() <= 21.0
