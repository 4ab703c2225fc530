"""Unit tests of the strategies' parts: base contract, registry, sampling, each algorithm."""

from __future__ import annotations

import json
import math

import fakes
import numpy as np
import pytest
from fakes import objective

from ranksearch import strategies
from ranksearch.strategies import Proposal, Strategy, StrategyError, sampling
from ranksearch.strategies.beam import BeamSearch
from ranksearch.strategies.evolution import PSTRN, Grid, _mode, centred_grid
from ranksearch.strategies.random_search import _bisection_order
from ranksearch.strategies.rl import MLPPolicy, PolicyGradient
from ranksearch.trial import TrialResult


@pytest.fixture
def small_space():
    return fakes.small()


@pytest.fixture
def tiny_space():
    return fakes.tiny()


@pytest.fixture
def lenet_space():
    return fakes.lenet5()


def drive(strategy, space, max_rounds=10_000):
    asked = []
    for _ in range(max_rounds):
        batch = []
        while (r := strategy.ask()) is not None:
            batch.append(r)
        if not batch:
            return asked
        asked += batch
        for r in batch:
            strategy.tell(str(r), objective(space, r))
    raise AssertionError("did not finish")


# -- registry -------------------------------------------------------------------------------------
def test_registry_names_and_errors(small_space):
    names = strategies.available()
    assert set(names) >= {"pstrn", "nsga2", "beam", "rl", "bayes", "random", "uniform", "optuna-nsga2"}
    with pytest.raises(StrategyError, match="unknown strategy 'nope'.*valid strategies: .*pstrn"):
        strategies.get("nope", small_space)
    opts = strategies.options("pstrn")
    assert opts["steps"] == (5, 2, 1) and opts["candidates"] == 5 and opts["population"] == 30
    assert opts["boundaries"] == (0.5, 0.8) and "seed" not in opts


def test_register_and_from_space(small_space):
    class Fixed(Strategy):
        name = "test-fixed"

        def __init__(self, space, *, seed=None, budget=None):
            super().__init__(space, seed=seed, budget=budget)

        def _propose(self, limit):
            if self.n_asked:
                self.mark_exhausted()
                return []
            return [self.lowest]

    strategies.register("test-fixed", Fixed)
    try:
        with pytest.raises(StrategyError, match="already registered"):
            strategies.register("test-fixed", Fixed)
        s = strategies.get("test-fixed", small_space, seed=0)
        assert drive(s, small_space) == [small_space.lower]
    finally:
        strategies._REGISTRY.pop("test-fixed")
    space = fakes.small(strategy={"name": "pstrn", "budget": 17, "options": {"population": 8}})
    s = strategies.from_space(space)
    assert s.name == "pstrn" and s.budget == 17 and s.population == 8 and s.seed == space.seed


# -- base contract --------------------------------------------------------------------------------
class Broken(Strategy):
    name = "broken"

    def __init__(self, space, proposal, **kw):
        super().__init__(space, **kw)
        self.proposal = proposal

    def _propose(self, limit):
        return [self.proposal]


@pytest.mark.parametrize("proposal, fragment", [
    ((1, 2), "expected 7 integers"),
    ((1, 2, 3, 4, 5, 6, 99), "outside its bounds"),
    ((1, 2, 3, 4, 5, 6, 2.5), "expected 7 integers"),
    ("abc", "expected 7 integers"),
])
def test_bad_proposals_fail_where_made_naming_the_strategy(small_space, proposal, fragment):
    with pytest.raises(StrategyError, match=f"strategy 'broken'.*{fragment}"):
        Broken(small_space, proposal, seed=0).ask()


def test_constraint_breaking_and_repeated_proposals_are_refused(small_space):
    constrained = fakes.small(constraints={"max_params": 600})
    with pytest.raises(StrategyError, match="breaking the space's constraints"):
        Broken(constrained, constrained.upper, seed=0).ask()
    s = Broken(small_space, small_space.lower, seed=0)
    s.tell("x", objective(small_space, small_space.lower))
    with pytest.raises(StrategyError, match="twice"):
        s.ask()


def test_numpy_integers_become_python_ints(small_space):
    s = Broken(small_space, np.array(small_space.lower, dtype=np.int64), seed=0)
    r = s.ask()
    assert r == small_space.lower and all(type(v) is int for v in r)


def test_objective_vector_handles_direction_and_failures(small_space):
    s = strategies.get("random", small_space, seed=0)
    r = small_space.equal_ranks(4)
    s.tell("ok", objective(small_space, r))
    obs = s.observations[-1]
    acc = objective(small_space, r).value("val_accuracy")
    assert obs.f[0] == pytest.approx(-acc)
    assert obs.f[1] == pytest.approx(-math.log10(small_space.dense_params / s.params(r)))
    s.tell("bad", TrialResult(small_space.equal_ranks(2), status="failed"))
    assert s.observations[-1].f[0] == 0.0 and not s.observations[-1].usable
    s.tell("pruned", TrialResult(small_space.equal_ranks(3), status="pruned",
                                 metrics={"val_accuracy": 0.5}))
    assert s.observations[-1].usable and s.observations[-1].accuracy == 0.5
    # objectives with other senses: params minimised, accuracy maximised
    space = fakes.small(objectives=[{"name": "params"}, {"name": "val_accuracy"}])
    t = strategies.get("random", space, seed=0)
    t.tell("a", objective(space, r))
    assert t.observations[-1].f[0] == pytest.approx(math.log10(t.params(r)))
    with pytest.raises(StrategyError, match="not a configuration"):
        t.tell("wrong", TrialResult((1, 2)))
    with pytest.raises(StrategyError, match="TrialResult"):
        t.tell("wrong", {"ranks": r})


def test_budget_from_space_and_option(small_space):
    assert strategies.get("random", small_space, seed=0).budget == small_space.config.strategy.budget
    assert strategies.get("random", small_space, seed=0, budget=3).budget == 3
    with pytest.raises(StrategyError, match="budget"):
        strategies.get("random", small_space, seed=0, budget=0)


def test_state_is_versioned_json_and_checked(small_space):
    s = strategies.get("pstrn", small_space, seed=3, budget=40, population=6)
    drive(s, small_space)
    state = s.state_dict()
    assert json.loads(json.dumps(state, allow_nan=False)) == state
    assert state["format"] == "ranksearch.strategy" and state["options"]["population"] == 6
    with pytest.raises(StrategyError, match="options differ"):
        strategies.get("pstrn", small_space, seed=3, budget=40).load_state_dict(state)
    with pytest.raises(StrategyError, match="version"):
        strategies.get("pstrn", small_space, population=6).load_state_dict({**state, "version": 99})
    with pytest.raises(StrategyError, match="not a strategy state"):
        strategies.get("pstrn", small_space).load_state_dict({"x": 1})
    # a fresh strategy made with another seed takes the recorded one
    t = strategies.get("pstrn", small_space, seed=99, population=6)
    t.load_state_dict(state)
    assert t.seed == 3 and t.n_asked == s.n_asked and t.is_finished()
    bad = json.loads(json.dumps(state))
    first_ask = next(e for e in bad["events"] if e.get("ask"))
    first_ask["ask"] = list(small_space.upper)
    with pytest.raises(StrategyError, match="diverged"):
        strategies.get("pstrn", small_space, population=6).load_state_dict(bad)


# -- sampling -------------------------------------------------------------------------------------
def test_spread_covers_the_compression_axis(lenet_space):
    s = strategies.get("random", lenet_space, seed=0)
    configs = sampling.spread(s, np.random.default_rng(0), 20)
    assert len(set(configs)) == 20
    logp = sorted(math.log10(s.params(c)) for c in configs)
    lo, hi = math.log10(s.params(s.lowest)), math.log10(s.params(s.highest))
    # stratified: every fifth of the log-parameter range holds some configuration
    bins = np.histogram(logp, bins=5, range=(lo, hi))[0]
    assert np.all(bins >= 2)
    uniform = [math.log10(s.params(sampling.uniform(s, np.random.default_rng(i)))) for i in range(20)]
    assert np.ptp(logp) > 2 * np.ptp(uniform)


def test_repair_lowers_until_feasible():
    space = fakes.lenet5(constraints={"max_params": 20_000})
    s = strategies.get("random", space, seed=0)
    fixed = sampling.repair(s, space.upper)
    assert fixed is not None and s.params(fixed) <= 20_000
    assert all(a <= b for a, b in zip(fixed, space.upper, strict=True))
    grid = [(2, 7, 12)] * space.n_ranks
    on_grid = sampling.repair(s, space.upper, grid)
    assert all(v in (2, 7, 12) for v in on_grid) and s.params(on_grid) <= 20_000


def test_new_feasible_enumerates_small_spaces(tiny_space):
    s = strategies.get("random", tiny_space, seed=0)
    seen = set()
    for _ in range(4):
        r = sampling.new_feasible(s, s.rng, exclude=seen)
        seen.add(r)
    assert len(seen) == 4
    assert sampling.new_feasible(s, s.rng, exclude=seen) is None


# -- uniform and random ---------------------------------------------------------------------------
def test_bisection_order_spans_early():
    order = _bisection_order(9)
    assert sorted(order) == list(range(9)) and order[:3] == [0, 8, 4]
    assert _bisection_order(2) == [0, 1]


def test_uniform_sweeps_equal_ranks(small_space):
    asked = drive(strategies.get("uniform", small_space, seed=0, budget=100), small_space)
    assert len(asked) == 8 and all(len(set(r)) == 1 for r in asked)
    assert asked[0] == small_space.lower and asked[1] == small_space.upper
    up = drive(strategies.get("uniform", small_space, order="ascending", budget=3), small_space)
    assert up == [small_space.equal_ranks(r) for r in (1, 2, 3)]
    with pytest.raises(StrategyError, match="order"):
        strategies.get("uniform", small_space, order="sideways")


def test_random_batches(small_space):
    s = strategies.get("random", small_space, seed=0, batch_size=3, budget=9)
    batch = [s.ask() for _ in range(3)]
    assert None not in batch and len(set(batch)) == 3


# -- NSGA-II and PSTRN ----------------------------------------------------------------------------
def test_centred_grid():
    values = tuple(range(2, 31))
    assert centred_grid(values, 15, 5, 5) == (5, 10, 15, 20, 25)
    assert centred_grid(values, 3, 2, 5) == (2, 4, 6, 8, 10)  # slides up at the lower bound
    assert centred_grid(values, 30, 1, 5) == (26, 27, 28, 29, 30)
    assert centred_grid((1, 2, 4, 8, 16), 4, 1, 3) == (2, 4)  # snaps to allowed values
    g = Grid([(2, 4, 6), (10, 20)])
    assert g.decode([0, 1]) == (2, 20) and list(g.encode((5, 11))) == [1, 0]
    assert _mode([3, 5, 5, 3, 7], prefer=4) == 3


def test_pstrn_phases_narrow_around_the_best(lenet_space):
    s = strategies.get("pstrn", lenet_space, seed=0, budget=150)
    assert s.phase_grid(s.centres, 5).candidates[0] == (2, 7, 12, 17, 22)  # starts at the bound
    phases, steps = [], []
    for _ in range(10_000):
        batch = []
        while (r := s.ask()) is not None:
            batch.append(r)
            phases.append(s.info(r)["phase"])
        if not batch:
            break
        steps.append((s.phase, s.grid.candidates))
        for r in batch:
            s.tell(str(r), objective(lenet_space, r))
    assert sorted(set(phases)) == [0, 1, 2] and phases == sorted(phases)
    first_switch = phases.index(1)
    assert first_switch >= 75 and phases.index(2) >= 120
    last_grid = steps[-1][1]
    assert all(len(c) == 5 and c[-1] - c[0] == 4 for c in last_grid)  # step 1, 5 candidates
    assert len(set(s.known)) == len(s.observations)  # nothing evaluated twice


def test_pstrn_option_validation(small_space):
    with pytest.raises(StrategyError, match="boundaries"):
        PSTRN(small_space, steps=(5, 2, 1), boundaries=(0.5,))
    with pytest.raises(StrategyError, match="steps"):
        PSTRN(small_space, steps=(5, 0))
    with pytest.raises(StrategyError, match="centre"):
        PSTRN(small_space, centre=(1, 2))
    with pytest.raises(StrategyError, match="init"):
        strategies.get("nsga2", small_space, init="sobol")
    s = PSTRN(small_space, steps=(2,), boundaries=(), centre=4, candidates=3)
    assert s.phase_grid(s.centres, 2).candidates[0] == (2, 4, 6)


def test_evolution_beats_random_on_a_cheap_landscape(lenet_space):
    from ranksearch.pareto import plane_hypervolume

    def hv(name, **opts):
        s = strategies.get(name, lenet_space, seed=0, budget=90, **opts)
        drive(s, lenet_space)
        acc = [o.accuracy for o in s.observations]
        return plane_hypervolume(acc, [lenet_space.dense_params / o.params for o in s.observations]).value

    base = hv("random")
    assert hv("nsga2") > 1.2 * base and hv("pstrn") > 1.2 * base


# -- beam -----------------------------------------------------------------------------------------
def test_beam_lowers_one_element_a_step(small_space):
    s = BeamSearch(small_space, factor=0.5)
    top = small_space.upper
    assert s.lower(top, 0) == (4,) + top[1:]
    assert s.lower((1,) + top[1:], 0) is None
    assert s.lower((2,) + top[1:], 0) == (1,) + top[1:]


def test_beam_descends_from_high_ranks(lenet_space):
    s = strategies.get("beam", lenet_space, seed=0, budget=60)
    asked = drive(s, lenet_space)
    assert asked[0] == lenet_space.upper
    steps = [s.info(r)["beam_step"] for r in asked]
    assert steps == sorted(steps) and steps[-1] > 5
    assert s.width == 1  # a full descent would not fit in 60 evaluations with a wider beam
    assert strategies.get("beam", lenet_space, budget=3000).auto_width(lenet_space.upper) == 4
    # every child sits one element-step below some earlier configuration
    for r in asked[1:]:
        assert any(sum(a != b for a, b in zip(r, p, strict=True)) == 1 and all(
            a <= b for a, b in zip(r, p, strict=True)) for p in asked[: asked.index(r)])


def test_beam_stops_at_its_target(lenet_space):
    s = strategies.get("beam", lenet_space, seed=0, budget=2000, targets=[5.0])
    asked = drive(s, lenet_space)
    assert len(asked) < 2000
    assert max(s.compression(r) for r in asked) < 5.0 * 2.5
    with pytest.raises(StrategyError, match="targets"):
        strategies.get("beam", lenet_space, targets=[-1])


# -- RL -------------------------------------------------------------------------------------------
def test_policy_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    pol = MLPPolicy(4, 5, 3, rng, lr=0.1)
    X = rng.normal(size=(6, 4))
    M = np.ones((6, 5), dtype=bool)
    M[0, 4] = False
    A = np.array([0, 1, 2, 3, 0, 1])
    W = rng.normal(size=6)

    def objective_fn():
        p, _ = pol.probs(X, M)
        return float((W * np.log(p[np.arange(6), A])).sum())

    grads = pol.grad_log_prob(X, M, A, W)
    for key in ("W1", "b1", "W2", "b2"):
        param = pol.params[key]
        idx = tuple(0 for _ in param.shape)
        old = param[idx]
        param[idx] = old + 1e-6
        up = objective_fn()
        param[idx] = old - 1e-6
        down = objective_fn()
        param[idx] = old
        assert grads[key][idx] == pytest.approx((up - down) / 2e-6, rel=1e-4, abs=1e-7)
    p, _ = pol.probs(X, M)
    assert p[0, 4] == 0 and np.allclose(p.sum(axis=1), 1)


def test_rl_masks_keep_the_budget_reachable():
    space = fakes.lenet5(constraints={"max_params": 10_000})
    s = strategies.get("rl", space, seed=0, budget=40, episodes=8)
    asked = drive(s, space)
    assert asked and all(s.params(r) <= 10_000 for r in asked)
    assert {s.info(r)["rl_batch"] for r in asked} >= {0, 1}


def test_rl_rewards(small_space):
    s = PolicyGradient(small_space, reward="accuracy_log")
    dense = small_space.dense_params
    assert s.reward(0.9, dense // 10, 0.1) == pytest.approx(0.9 + 0.1 * math.log(dense / (dense // 10)))
    e = PolicyGradient(small_space, reward="error_log")
    assert e.reward(0.9, 1000, 0.0) == pytest.approx(-0.1 * math.log(1000))
    with pytest.raises(StrategyError, match="reward"):
        PolicyGradient(small_space, reward="speed")
    with pytest.raises(StrategyError, match="algorithm"):
        PolicyGradient(small_space, algorithm="ddpg")


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_rl_learns_both_ways(lenet_space, algorithm):
    s = strategies.get("rl", lenet_space, seed=0, budget=60, algorithm=algorithm)
    before = {k: v.copy() for k, v in (s.policy.params.items() if s.policy else [])}
    drive(s, lenet_space)
    assert s.batch >= 5 and not before
    assert all(np.all(np.isfinite(v)) for v in s.policy.params.values())


# -- Bayesian -------------------------------------------------------------------------------------
def test_bayes_botorch_missing_says_how_to_install(small_space):
    try:
        import botorch  # noqa: F401
        import optuna_integration  # noqa: F401
    except ImportError:
        with pytest.raises(StrategyError, match="pip install optuna-integration botorch"):
            strategies.get("bayes", small_space, sampler="botorch")
    else:  # pragma: no cover - only where BoTorch is installed
        strategies.get("bayes", small_space, sampler="botorch")
    with pytest.raises(StrategyError, match="one of .tpe., .gp., .botorch., .random."):
        strategies.get("bayes", small_space, sampler="cmaes")


def test_bayes_batches_with_constant_liar(small_space):
    s = strategies.get("bayes", small_space, seed=0, budget=20, batch_size=4, n_startup=4)
    first = [s.ask() for _ in range(4)]
    assert None not in first and s.ask() is None and s.pending == 4
    for r in first:
        s.tell(str(r), objective(small_space, r))
    nxt = [s.ask() for _ in range(4)]
    assert None not in nxt and not set(nxt) & set(first)


@pytest.mark.slow
def test_bayes_gp_sampler_runs(small_space):
    s = strategies.get("bayes", small_space, seed=0, budget=6, sampler="gp", n_startup=4)
    assert len(drive(s, small_space)) == 6


def test_optuna_strategies_never_train_twice_or_break_constraints():
    space = fakes.small(constraints={"max_params": 500})
    for name in ("bayes", "optuna-nsga2"):
        s = strategies.get(name, space, seed=1, budget=40)
        asked = drive(s, space)
        assert len(asked) == len(set(asked)) and all(s.params(r) <= 500 for r in asked)


def test_proposal_info_is_kept(small_space):
    s = strategies.get("nsga2", small_space, seed=0, budget=10, population=4)
    r = s.ask()
    assert s.info(r) == {"generation": 0, "phase": 0}
    assert s.info(small_space.upper) == {} or small_space.upper == r
    assert isinstance(Proposal(r, {}).info, dict)


def test_a_queued_configuration_told_from_elsewhere_is_not_handed_out(small_space):
    s = strategies.get("nsga2", small_space, seed=0, budget=30, population=6)
    first = s.ask()
    queued = [p.ranks for p in s._queue]
    assert queued, "a generation is proposed at once"
    s.tell("elsewhere", objective(small_space, queued[0]))
    rest = []
    while (r := s.ask()) is not None:
        rest.append(r)
    assert queued[0] not in rest and first not in rest
