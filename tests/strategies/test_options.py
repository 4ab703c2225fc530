"""Typed strategy options: declared once, listed by `catalog`, checked once with clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import fakes
import pytest

from ranksearch import strategies
from ranksearch.strategies import Strategy, StrategyError, StrategyOptions, option
from ranksearch.trial import RankConfig


@pytest.fixture
def small_space():
    return fakes.small()


def test_catalog_lists_every_strategy_with_documented_options():
    cat = strategies.catalog()
    assert [c["name"] for c in cat] == strategies.available()
    by_name = {c["name"]: c for c in cat}
    builtin = {"random", "uniform", "nsga2", "pstrn", "beam", "rl", "bayes", "optuna-nsga2", "learned"}
    assert builtin <= set(by_name)
    for entry in cat:
        for opt in entry["options"]:
            assert set(opt) == {"name", "type", "default", "help"}
        if entry["name"] in builtin:  # other tests register untyped stand-ins
            assert entry["summary"], f"{entry['name']} has no summary"
            assert all(o["type"] and o["help"] for o in entry["options"]), entry["name"]
    json.dumps(cat)  # plain data, ready for `ranksearch strategies --json`
    beam = {o["name"]: o for o in by_name["beam"]["options"]}
    assert beam["factor"]["type"] == "float in (0, 1)" and beam["factor"]["default"] == 0.4
    assert beam["width"]["type"] == "int >= 1, or None"
    rl = {o["name"]: o for o in by_name["rl"]["options"]}
    assert rl["algorithm"]["type"] == "one of 'reinforce', 'ppo'"
    assert rl["lambdas"]["default"] == [0.002, 0.006, 0.02, 0.06, 0.2]


@pytest.mark.parametrize(("name", "opts", "fragments"), [
    ("beam", {"factor": 1.5}, ["'beam'", "'factor'", "1.5", "float in (0, 1)"]),
    ("beam", {"children": "3"}, ["'children'", "'3'", "int >= 1"]),
    ("beam", {"width": True}, ["'width'", "True", "int >= 1, or None"]),
    ("beam", {"targets": []}, ["'targets'", "list of float > 0 (at least 1), or None"]),
    ("rl", {"algorithm": "a2c"}, ["'rl'", "'algorithm'", "'a2c'", "one of 'reinforce', 'ppo'"]),
    ("rl", {"lambdas": [0.1, -1]}, ["'lambdas'", "-1", "list of float >= 0"]),
    ("rl", {"lr": float("nan")}, ["'lr'", "nan"]),
    ("pstrn", {"boundaries": [0.5]}, ["'pstrn'", "'boundaries'", "2 increasing fractions", "(steps has 3 phases)"]),
    ("pstrn", {"steps": [5, 0]}, ["'steps'", "list of int >= 1 (at least 1)"]),
    ("nsga2", {"init": "sobol"}, ["'nsga2'", "'init'", "'spread', 'random'"]),
    ("bayes", {"n_startup": -1}, ["'bayes'", "'n_startup'", "int >= 0"]),
    ("random", {"batch_size": 0}, ["'random'", "'batch_size'", "0"]),
    ("uniform", {"order": "up"}, ["'uniform'", "'order'", "'spread', 'ascending', 'descending'"]),
    ("optuna-nsga2", {"population": 1}, ["'optuna-nsga2'", "'population'", "int >= 2"]),
])
def test_bad_values_are_errors_naming_strategy_option_value_and_what_to_give(
        name, opts, fragments, small_space):
    with pytest.raises(StrategyError) as checked:
        strategies.check_options(name, opts)
    with pytest.raises(StrategyError) as built:
        strategies.get(name, small_space, seed=0, **opts)
    assert str(checked.value) == str(built.value)  # the input edge says what `run` would say
    for fragment in fragments:
        assert fragment in str(checked.value)


def test_unknown_options_list_the_valid_ones():
    with pytest.raises(StrategyError) as err:
        strategies.check_options("beam", {"widht": 2})
    text = str(err.value)
    assert "'widht'" in text and "width (int >= 1, or None" in text and "budget" in text


def test_check_options_returns_typed_values_without_building():
    opts = strategies.check_options("rl", {"lambdas": [0, 1], "lr": 1, "budget": 9})
    assert opts.lambdas == (0.0, 1.0) and isinstance(opts.lr, float) and opts.lr == 1.0
    assert opts.episodes == 10
    with pytest.raises(StrategyError, match="budget must be a positive integer"):
        strategies.check_options("rl", {"budget": 0})
    with pytest.raises(StrategyError, match="unknown strategy 'nope'"):
        strategies.check_options("nope", {})


def test_options_are_frozen_typed_and_kept_in_the_state(small_space):
    s = strategies.get("pstrn", small_space, seed=0, steps=[4, 1], boundaries=[0.5], centre=[3] * 7)
    assert s.opts.steps == (4, 1) and s.opts.centre == (3,) * 7
    with pytest.raises(AttributeError):
        s.opts.steps = (1,)  # type: ignore[misc]
    state = json.loads(json.dumps(s.state_dict()))
    assert state["options"]["steps"] == [4, 1]
    assert strategies.from_state(small_space, state).opts == s.opts
    with pytest.raises(StrategyError, match="one per rank element"):
        strategies.get("pstrn", small_space, centre=[3, 3])


@dataclass(frozen=True)
class _StepOptions(StrategyOptions):
    step: int = option(2, "how far apart the proposals are", low=1)


class _Typed(Strategy):
    """Equal ranks every `step` values: a third-party strategy with typed options."""

    name = "test-typed"
    Options = _StepOptions

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        for v in self.values[0][:: self.opts.step]:
            cfg = tuple(min(vals, key=lambda x, v=v: abs(x - v)) for vals in self.values)
            if self.is_new(cfg):
                return [cfg]
        self.mark_exhausted()
        return []


class _Untyped(Strategy):
    name = "test-untyped"

    def __init__(self, space, *, seed=None, budget=None, width: int = 1) -> None:
        super().__init__(space, seed=seed, budget=budget, options={"width": width})

    def _propose(self, limit: int) -> Iterable[RankConfig]:
        return []


def test_a_typed_strategy_needs_no_constructor(small_space):
    s = _Typed(small_space, seed=0, step=3)
    assert s.opts.step == 3 and s.options == {"step": 3}
    with pytest.raises(StrategyError, match="'test-typed' has no option 'stepp'"):
        _Typed(small_space, stepp=3)
    with pytest.raises(StrategyError, match="'step' = 0"):
        _Typed(small_space, step=0)


def test_untyped_strategies_still_work_and_are_checked_by_signature(small_space):
    if "test-untyped" not in strategies.available():
        strategies.register("test-untyped", _Untyped)
    s = strategies.get("test-untyped", small_space, seed=0, width=3)
    assert s.opts is None and s.options == {"width": 3}
    assert strategies.options("test-untyped") == {"budget": None, "width": 1}
    with pytest.raises(StrategyError, match="no option 'depth'.*width=1"):
        strategies.check_options("test-untyped", {"depth": 1})
    entry = next(c for c in strategies.catalog() if c["name"] == "test-untyped")
    assert entry["options"] == [{"name": "width", "type": "", "default": 1, "help": ""}]


def test_reserved_option_names_are_refused(small_space):
    @dataclass(frozen=True)
    class Bad(StrategyOptions):
        seed: int = option(0, "clashes with the constructor's seed")

    with pytest.raises(StrategyError, match="reserved"):
        Bad.parse("bad", {})


@pytest.mark.parametrize("name", ["random", "uniform", "nsga2", "pstrn", "beam", "rl", "bayes",
                                  "optuna-nsga2", "learned"])
def test_options_round_trip_through_plain_data(name):
    cls = strategies.strategy_class(name).Options
    defaults = cls.parse(name, {})
    assert defaults.to_dict() == cls.defaults()
    plain = json.loads(json.dumps(defaults.to_dict()))  # tuples become lists, as in YAML
    assert cls.parse(name, plain) == defaults
