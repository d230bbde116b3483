"""What defines a search: same params -> same project folder, changed params -> a new one."""

from __future__ import annotations

from pipeline.config import parse_params
from pipeline.tuning.identity import flatten, search_hash


def test_hash_ignores_how_the_search_runs_but_not_what_it_searches() -> None:
    base = search_hash(parse_params({}), "fp")
    assert search_hash(parse_params({"tune": {"resume": False, "workers": 1, "keras_verbose": True}}), "fp") == base
    assert search_hash(parse_params({"tune": {"max_epochs": 27}}), "fp") != base
    assert search_hash(parse_params({"search_space": {"dropout": 0.1}}), "fp") != base
    assert search_hash(parse_params({"seed": 7}), "fp") != base
    assert search_hash(parse_params({}), "other-data") != base


def test_flatten_makes_string_params() -> None:
    assert flatten("s", {"a": {"choices": [1, 2]}, "b": 3}) == {"s.a.choices": "[1, 2]", "s.b": "3"}
