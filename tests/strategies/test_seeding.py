"""Seeds: equal-rank and effective-rank generators, `add_seeds` on every strategy, YAML and resume.

Strategy runs use the synthetic landscape of `ranksearch.bench.strategies` on fake spaces; the
effective-rank tests read a (untrained, or planted low-rank) dense LeNet-5. No Ray, no training.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import fakes
import numpy as np
import pytest
import torch
import yaml

from ranksearch import SpaceError, count_params, strategies
from ranksearch.bench.strategies import SyntheticEvaluator
from ranksearch.models import build_dense
from ranksearch.space import SearchSpace, TensorizedLayer
from ranksearch.strategies import StrategyError, seeding
from ranksearch.strategies.base import STATE_VERSION
from ranksearch.tensorized import make_layer, num_ranks

NAMES = strategies.available()
BUDGET = 30
SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


@pytest.fixture
def small_space():
    return fakes.small()


@pytest.fixture(scope="module")
def lenet_net(pstrn_space):
    torch.manual_seed(0)
    return build_dense(pstrn_space.config.model, pstrn_space.input_shape, pstrn_space.num_classes)


def run(strategy, evaluate, *, max_calls: int = 2000) -> list[tuple[int, ...]]:
    """Ask until None, tell the batch back in reverse order, until finished. Returns the asks."""
    asked: list[tuple[int, ...]] = []
    for _ in range(max_calls):
        batch = []
        while (r := strategy.ask()) is not None:
            batch.append(r)
        if not batch:
            assert strategy.is_finished()
            return asked
        asked += batch
        for r in reversed(batch):
            strategy.tell(f"t{len(asked)}-{r}", evaluate(r))
    raise AssertionError("the strategy never finished")


def _log_params(space, configs):
    return np.log([count_params(space, c) for c in configs])


# -- equal-rank seeds -------------------------------------------------------------------------------
def test_equal_seeds_are_distinct_feasible_and_spread(pstrn_space):
    seeds = seeding.equal_rank_seeds(pstrn_space, 6)
    assert len(seeds) == len(set(seeds)) == 6
    assert all(len(set(c)) == 1 for c in seeds)  # equal ranks
    assert seeds[0] == pstrn_space.equal_ranks(30) and seeds[-1] == pstrn_space.equal_ranks(2)
    logp = _log_params(pstrn_space, seeds)
    gaps = -np.diff(logp)
    assert (gaps > 0).all(), "largest first"
    assert gaps.max() < 2.0 * gaps.min()  # evenly spaced on the compression axis


def test_equal_seeds_respect_constraints(pstrn_space):
    limit = count_params(pstrn_space, pstrn_space.equal_ranks(12)) + 1
    seeds = seeding.equal_rank_seeds(pstrn_space, 4, max_params=limit)
    assert seeds[0] == pstrn_space.equal_ranks(12)
    assert all(count_params(pstrn_space, c) <= limit for c in seeds)
    dense = pstrn_space.dense_params
    seeds = seeding.equal_rank_seeds(pstrn_space, 4, min_compression=20.0)
    assert seeds and all(dense / count_params(pstrn_space, c) >= 20.0 for c in seeds)


def test_equal_seeds_on_a_small_space_are_all_levels():
    space = fakes.tiny()
    assert seeding.equal_rank_seeds(space, 10) == [(2, 2), (1, 1)]
    assert seeding.equal_rank_seeds(space, 0) == []
    with pytest.raises(ValueError, match="number of seeds"):
        seeding.equal_rank_seeds(space, -1)


# -- effective-rank seeds ---------------------------------------------------------------------------
def test_effective_rank_of_planted_matrices():
    rng = np.random.default_rng(0)
    for k in (1, 3, 7):
        u, _ = np.linalg.qr(rng.normal(size=(50, k)))
        v, _ = np.linalg.qr(rng.normal(size=(80, k)))
        assert seeding.effective_rank(3.0 * u @ v.T) == pytest.approx(k, abs=1e-6)
        assert seeding.effective_rank(v @ u.T) == pytest.approx(k, abs=1e-6)
    assert seeding.effective_rank(np.zeros((3, 4))) == 1.0


def test_effective_seeds_from_dense_lenet5(pstrn_space, lenet_net):
    shape = seeding.effective_rank_shape(pstrn_space, lenet_net)
    assert len(shape) == pstrn_space.n_ranks and all(s >= 1.0 for s in shape)
    # conv1's kernel+out arc (25 x 20) against its in+kernel arc (bounded by 5): r0 > r1
    assert shape[0] > shape[1]
    seeds = seeding.effective_rank_seeds(pstrn_space, lenet_net, 5)
    assert len(seeds) == len(set(seeds)) == 5
    for c in seeds:
        pstrn_space.check_ranks(c)
    logp = _log_params(pstrn_space, seeds)
    assert (np.diff(logp) < 0).all()
    assert seeds[-1] == pstrn_space.lower  # the path starts at the lowest configuration
    assert seeds == seeding.effective_rank_seeds(pstrn_space, lenet_net, 5)  # deterministic
    limit = count_params(pstrn_space, seeds[2])
    capped = seeding.effective_rank_seeds(pstrn_space, lenet_net, 4, max_params=limit)
    assert capped[0] == seeds[2] and all(count_params(pstrn_space, c) <= limit for c in capped)


def test_effective_seeds_recover_a_planted_tensor_ring(pstrn_space, lenet_net):
    net = copy.deepcopy(lenet_net)
    planted = {"fc1": 4, "conv2": 3}
    torch.manual_seed(1)
    with torch.no_grad():
        for lay in pstrn_space.layers:
            if lay.name in planted:
                tr = lay.build(planted[lay.name])
                net.get_submodule(lay.name).weight.copy_(tr.full_weight())
    shape = seeding.effective_rank_shape(pstrn_space, net)
    for element, value in zip(pstrn_space.elements, shape, strict=True):
        layer = element.members[0][0]
        if layer in planted:
            r = planted[layer]
            assert 0.8 * r <= value <= r + 1e-6, (element.name, value)
            assert round(value) == r


@pytest.mark.parametrize("fmt,kind,ins,outs,kernel,rank", [
    ("tr", "conv", (4, 5), (5, 10), (3, 3), 5),
    ("tt", "linear", (4, 8, 8), (4, 8, 10), None, 5),
    ("tt", "conv", (4, 5), (5, 10), (3, 3), 4),
    ("tucker", "linear", (40,), (30,), None, 6),
    ("tucker", "conv", (20,), (50,), (3, 3), 7),
    ("cp", "linear", (4, 8, 8), (4, 8, 10), None, 3),
    ("cp", "conv", (4, 5), (5, 10), (3, 3), 3),
])
def test_layer_effective_ranks_recover_planted_ranks(fmt, kind, ins, outs, kernel, rank):
    layer = TensorizedLayer(name="x", kind=kind, format=fmt, in_shape=ins, out_shape=outs,
                            n_ranks=num_ranks(fmt, kind, ins, outs), bias=True, kernel_size=kernel)
    torch.manual_seed(0)
    weight = make_layer(fmt, kind, ins, outs, rank, kernel_size=kernel).full_weight().detach().numpy()
    found = seeding.layer_effective_ranks(layer, weight)
    assert len(found) == layer.n_ranks
    # the effective rank never exceeds the rank; random cores put it within 25% of it
    assert all(0.75 * rank <= v <= rank + 1e-6 for v in found), found


def test_tucker_reads_an_exact_flat_spectrum():
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.normal(size=(30, 6)))
    v, _ = np.linalg.qr(rng.normal(size=(40, 6)))
    layer = TensorizedLayer(name="x", kind="linear", format="tucker", in_shape=(40,), out_shape=(30,),
                            n_ranks=2, bias=True)
    assert seeding.layer_effective_ranks(layer, u @ v.T) == pytest.approx((6.0, 6.0))


def test_scaled_path_moves_up_one_step_at_a_time(pstrn_space):
    path = seeding.scaled_path(pstrn_space, [1.0 + i for i in range(pstrn_space.n_ranks)])
    assert path[0] == pstrn_space.lower and path[-1] == pstrn_space.upper
    assert len(path) == len(set(path))
    for a, b in zip(path, path[1:], strict=False):
        assert all(x <= y for x, y in zip(a, b, strict=True))


# -- seeds on every strategy ------------------------------------------------------------------------
def _seeds(space):
    return [*seeding.equal_rank_seeds(space, 4), (1, 2, 3, 4, 5, 6, 7)]


@pytest.mark.parametrize("name", NAMES)
def test_seeds_are_asked_first_then_the_strategy_runs_to_its_budget(name, small_space):
    evaluate = SyntheticEvaluator(small_space)
    s = strategies.get(name, small_space, seed=1, budget=BUDGET)
    seeds = _seeds(small_space)
    assert s.add_seeds(seeds, kind="equal") == seeds
    assert s.seeds == tuple(seeds)
    asked = run(s, evaluate)
    assert asked[: len(seeds)] == seeds
    assert len(set(asked)) == len(asked), "a configuration was proposed twice"
    assert all(s.feasible(r) for r in asked)
    assert s.info(seeds[0]) == {"seeded": "equal"}
    if name == "uniform":  # its equal-rank levels run out: 8 levels, 4 of them seeded
        assert len(asked) == len(seeds) + 4
    else:
        assert len(asked) == BUDGET
    assert s.is_finished() and s.pending == 0
    assert {o.ranks for o in s.observations} >= set(seeds)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_count_against_a_small_budget(name, small_space):
    s = strategies.get(name, small_space, seed=2, budget=3)
    s.add_seeds(_seeds(small_space))
    asked = run(s, SyntheticEvaluator(small_space))
    assert asked == _seeds(small_space)[:3]


@pytest.mark.parametrize("name", NAMES)
def test_seeds_told_late_are_waited_for_or_used(name, small_space):
    """Seeds still running while the strategy proposes its own: nothing breaks or repeats."""
    evaluate = SyntheticEvaluator(small_space)
    s = strategies.get(name, small_space, seed=3, budget=BUDGET)
    seeds = _seeds(small_space)
    s.add_seeds(seeds)
    first = []
    while len(first) < 12 and (r := s.ask()) is not None:
        first.append(r)
    assert first[: len(seeds)] == seeds
    for r in first[len(seeds):]:
        s.tell(f"own-{r}", evaluate(r))
    for r in reversed(seeds):
        s.tell(f"seed-{r}", evaluate(r))
    asked = first + run(s, evaluate)
    assert len(set(asked)) == len(asked)
    assert s.is_finished()


@pytest.mark.parametrize("name", ["nsga2", "pstrn"])
def test_evolution_puts_seeds_into_its_first_population(name, small_space):
    evaluate = SyntheticEvaluator(small_space)
    s = strategies.get(name, small_space, seed=4, budget=BUDGET, population=8)
    seeds = [(8,) * 7, (1,) * 7]  # on both strategies' first grids
    s.add_seeds(seeds)
    batch = []
    while (r := s.ask()) is not None:
        batch.append(r)
    assert batch[:2] == seeds and len(batch) == 8  # the seeds fill two of the 8 places
    for r in batch[2:]:
        s.tell(f"own-{r}", evaluate(r))
    assert s.ask() is None and not s.is_finished()  # generation 0 waits for its seeds
    for r in seeds:
        s.tell(f"seed-{r}", evaluate(r))
    assert s.ask() is not None and s.generation == 1


@pytest.mark.parametrize("name", ["bayes", "optuna-nsga2"])
def test_optuna_studies_get_the_seeds_as_trials(name, small_space):
    from optuna.trial import TrialState

    evaluate = SyntheticEvaluator(small_space)
    s = strategies.get(name, small_space, seed=5, budget=12)
    seeds = _seeds(small_space)
    s.add_seeds(seeds)
    run(s, evaluate)
    keys = [e.name for e in small_space.elements]
    done = {tuple(t.params[k] for k in keys) for t in s._study.trials if t.state == TrialState.COMPLETE}
    assert set(seeds) <= done


def test_bad_infeasible_and_repeated_seeds(small_space):
    s = strategies.get("random", small_space, seed=0, budget=10)
    with pytest.raises(StrategyError, match="seed.*expected 7 integers"):
        s.add_seeds([(1, 2)])
    with pytest.raises(StrategyError, match="outside its bounds"):
        s.add_seeds([(9,) * 7])
    assert s.add_seeds([(2,) * 7, (2,) * 7, (3,) * 7]) == [(2,) * 7, (3,) * 7]
    assert s.add_seeds([(3,) * 7]) == []
    capped = strategies.get("random", fakes.small(constraints={"max_params": 600}), seed=0)
    assert capped.add_seeds([(8,) * 7, (1,) * 7]) == [(1,) * 7]
    s.ask()
    with pytest.raises(StrategyError, match="before the first ask"):
        s.add_seeds([(4,) * 7])


def test_seeds_told_elsewhere_before_their_ask_are_not_trained(small_space):
    evaluate = SyntheticEvaluator(small_space)
    s = strategies.get("random", small_space, seed=0, budget=5)
    seeds = _seeds(small_space)
    s.add_seeds(seeds)
    s.tell("elsewhere", evaluate(seeds[1]))
    asked = run(s, evaluate)
    assert seeds[1] not in asked and asked[:2] == [seeds[0], seeds[2]]


# -- resume -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_keeps_seeds(name, small_space):
    evaluate = SyntheticEvaluator(small_space)
    seeds = _seeds(small_space)
    a = strategies.get(name, small_space, seed=6, budget=BUDGET)
    a.add_seeds(seeds, kind="equal")
    first = [a.ask() for _ in range(3)]  # seeds, still in flight
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    assert state["version"] == STATE_VERSION
    assert state["seeds"] == [{"ranks": list(r), "kind": "equal"} for r in seeds]
    b = strategies.from_state(small_space, state)
    assert b.seeds == tuple(seeds) and b.n_asked == 3
    for s in (a, b):
        for r in first:
            s.tell(f"{r}", evaluate(r))
    rest = [run(s, evaluate) for s in (a, b)]
    assert rest[0] == rest[1]
    assert rest[0][:2] == seeds[3:]


def test_state_replaces_seeds_added_before_loading(small_space):
    a = strategies.get("random", small_space, seed=7, budget=10)
    a.add_seeds([(4,) * 7])
    a.ask()
    state = a.state_dict()
    b = strategies.get("random", small_space, seed=7, budget=10)
    b.add_seeds([(5,) * 7, (6,) * 7])  # e.g. made by from_space before loading
    b.load_state_dict(state)
    assert b.seeds == ((4,) * 7,) and b.ask() == a.ask()


def test_version_1_states_without_seeds_still_load(small_space):
    a = strategies.get("nsga2", small_space, seed=8, budget=10, population=4)
    for _ in range(3):
        a.ask()
    state = a.state_dict()
    old = {k: v for k, v in state.items() if k != "seeds"} | {"version": 1}
    b = strategies.from_state(small_space, old)
    assert b.n_asked == 3 and b.seeds == ()


# -- the space's strategy.seeds ---------------------------------------------------------------------
def test_from_space_adds_equal_and_explicit_seeds_in_order():
    space = fakes.small(strategy={"name": "nsga2", "budget": 20, "seed_count": 3,
                                  "seeds": [[1, 2, 3, 4, 5, 6, 7], "equal"]})
    s = strategies.from_space(space)
    expected = [(1, 2, 3, 4, 5, 6, 7), *seeding.equal_rank_seeds(space, 3)]
    assert s.seeds == tuple(expected)
    assert [s.ask() for _ in expected] == expected
    assert s.info(expected[0]) == {"seeded": "explicit"} and s.info(expected[1]) == {"seeded": "equal"}


def _pstrn_dict(**strategy):
    data = yaml.safe_load((SPACES / "pstrn_lenet5_fashion.yaml").read_text())
    data["strategy"] = {"name": "random", "budget": 20, **strategy}
    return data


def test_effective_seeds_come_from_the_dense_network(lenet_net):
    data = _pstrn_dict(seeds=["equal", "effective"], seed_count=3)
    data["training"]["init"] = "dense"
    space = SearchSpace.from_dict(data)
    again = SearchSpace.from_dict(json.loads(json.dumps(space.to_dict())))
    assert again == space and again.config.strategy.seeds == ("equal", "effective")
    s = strategies.from_space(space)  # no network yet: equal seeds only
    equal = seeding.equal_rank_seeds(space, 3)
    assert s.seeds == tuple(equal)
    added = strategies.seed_strategy(s, space, lenet_net)
    effective = seeding.effective_rank_seeds(space, lenet_net, 3)
    assert added == [c for c in effective if c not in equal]
    assert s.seeds == tuple(equal + added)


@pytest.mark.parametrize("seeds,needles", [
    (["foo"], ["strategy.seeds", "'foo'", "write 'equal', 'effective', 'learned' or a list of integers"]),
    ("equal", ["strategy.seeds", "must be a list"]),
    ([[2, 2.5]], ["strategy.seeds", "not a rank vector"]),
    ([[2, True]], ["strategy.seeds", "not a rank vector"]),
    (["equal", "equal"], ["strategy.seeds", "repeats 'equal'", "seed_count"]),
    ([{"equal": 3}], ["strategy.seeds", "not a seed"]),
])
def test_bad_seeds_in_yaml_name_the_field_and_the_fix(seeds, needles):
    with pytest.raises(SpaceError) as err:
        SearchSpace.from_dict(_pstrn_dict(seeds=seeds))
    for needle in needles:
        assert needle in str(err.value)


def test_seed_vectors_are_checked_against_the_space():
    space = SearchSpace.from_dict(_pstrn_dict(seeds=["equal", [2, 3]]))
    with pytest.raises(SpaceError) as err:
        seeding.check_seeds(space)
    assert "strategy.seeds.1" in str(err.value) and "one integer per element" in str(err.value)
    with pytest.raises(SpaceError, match="outside its bounds"):
        strategies.from_space(SearchSpace.from_dict(_pstrn_dict(seeds=[[31] * 20])))


def test_effective_seeds_need_a_dense_warm_start(tmp_path, capsys):
    from ranksearch.cli import main

    data = _pstrn_dict(seeds=["effective"])
    space = SearchSpace.from_dict(data)
    with pytest.raises(SpaceError) as err:
        seeding.check_seeds(space)
    text = str(err.value)
    assert "strategy.seeds" in text and "training.init" in text and "init: dense" in text
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SystemExit) as info:
        main(["validate", str(path)])
    assert info.value.code == 2 and "training.init" in capsys.readouterr().err
    data["training"]["init"] = "dense"
    seeding.check_seeds(SearchSpace.from_dict(data))


def test_prepare_search_keeps_the_seeds(tmp_path):
    from ranksearch import service

    data = _pstrn_dict(seeds=["equal", [4] * 20])
    prepared = service.prepare_search(SearchSpace.from_dict(data), strategy="nsga2", budget=40,
                                      storage=str(tmp_path), check_storage=False)
    assert prepared.space.config.strategy.seeds == ("equal", (4,) * 20)
    assert prepared.space.config.strategy.name == "nsga2"
    data["training"]["init"] = "scratch"
    data["strategy"]["seeds"] = ["effective"]
    with pytest.raises(SpaceError, match="training.init"):
        service.prepare_search(SearchSpace.from_dict(data), storage=str(tmp_path), check_storage=False)


def test_driver_seeds_a_fresh_strategy_after_the_warm_start(tmp_path, lenet_net):
    from ranksearch.tune import driver
    from ranksearch.tune.storage import Storage
    from ranksearch.tune.warmstart import install_dense

    data = _pstrn_dict(seeds=["effective"], seed_count=2)
    data["training"]["init"] = "dense"
    space = SearchSpace.from_dict(data)
    storage = Storage.parse(str(tmp_path))
    path = install_dense(space, storage, "s", lenet_net.state_dict(), samples_seen=0, val_accuracy=0.5)
    events = []
    display = type("Display", (), {"event": lambda self, text: events.append(text)})()
    s = strategies.get("random", space, seed=0, budget=5)
    driver._seed(space, s, storage, path, display)
    assert s.seeds == tuple(seeding.effective_rank_seeds(space, lenet_net, 2))
    assert events == ["2 seed configurations go first"]
    s.ask()
    driver._seed(space, s, storage, path, display)  # started: left alone
    assert len(events) == 1
