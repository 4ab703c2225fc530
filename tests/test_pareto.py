from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ranksearch.pareto import (
    Condition,
    Pick,
    PickError,
    crowding_distance,
    dominates,
    front_ranks,
    hypervolume,
    knee_point,
    max_subject_to,
    min_subject_to,
    non_dominated_mask,
    non_dominated_sort,
    parse_pick,
    pick,
    plane_hypervolume,
    rank_and_crowding_order,
)


def brute_fronts(F):
    left = list(range(len(F)))
    fronts = []
    while left:
        front = [i for i in left if not any(dominates(F[j], F[i]) for j in left if j != i)]
        fronts.append(sorted(front))
        left = [i for i in left if i not in front]
    return fronts


def brute_hv(F, ref, samples=200_000, seed=0):
    """Monte Carlo hypervolume (minimisation) for cross-checking."""
    rng = np.random.default_rng(seed)
    lo = F.min(axis=0)
    box = np.prod(ref - lo)
    X = lo + rng.random((samples, F.shape[1])) * (ref - lo)
    dominated = np.zeros(samples, dtype=bool)
    for p in F:
        dominated |= np.all(X >= p, axis=1)
    return box * dominated.mean()


def test_dominance_basics():
    assert dominates([1, 2], [2, 2]) and not dominates([2, 2], [2, 2])
    assert not dominates([1, 3], [2, 2]) and not dominates([2, 2], [1, 3])


@pytest.mark.parametrize("seed", range(5))
def test_non_dominated_sort_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    F = rng.integers(0, 6, (40, 3)).astype(float)  # ties and duplicates on purpose
    fronts = [sorted(map(int, f)) for f in non_dominated_sort(F)]
    assert fronts == brute_fronts(F)
    assert sorted(itertools.chain(*fronts)) == list(range(40))
    mask = non_dominated_mask(F)
    assert sorted(np.flatnonzero(mask)) == fronts[0]
    ranks = front_ranks(F)
    for k, f in enumerate(fronts):
        assert all(ranks[i] == k for i in f)


def test_empty_inputs():
    assert non_dominated_sort(np.zeros((0, 2))) == []
    assert non_dominated_mask(np.zeros((0, 2))).shape == (0,)
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0
    assert plane_hypervolume([], []).value == 0.0


def test_crowding_distance():
    F = np.array([[0, 4], [1, 3], [2, 1], [4, 0]], dtype=float)
    cd = crowding_distance(F)
    assert np.isinf(cd[0]) and np.isinf(cd[3])
    assert cd[1] == pytest.approx(2 / 4 + 3 / 4)
    assert cd[2] == pytest.approx(3 / 4 + 3 / 4)
    assert np.all(np.isinf(crowding_distance(F[:2])))
    order = rank_and_crowding_order(np.vstack([F, [[5, 5]]]))
    assert order[-1] == 4 and set(order[:2]) == {0, 3}


def test_hypervolume_2d_exact():
    F = np.array([[1, 3], [2, 2], [3, 1]], dtype=float)
    assert hypervolume(F, [4, 4]) == pytest.approx(3 + 2 + 1)
    # dominated and out-of-box points add nothing
    G = np.vstack([F, [[3, 3], [5, 0], [np.nan, 1]]])
    assert hypervolume(G, [4, 4]) == pytest.approx(6)
    assert hypervolume(F, [4, 4], ideal=[0, 0]) == pytest.approx(6 / 16)
    with pytest.raises(ValueError):
        hypervolume(F, [4, 4], ideal=[5, 0])
    with pytest.raises(ValueError):
        hypervolume(F, [4, 4, 4])


@pytest.mark.parametrize("m", [3, 4])
def test_hypervolume_higher_dimensions_against_monte_carlo(m):
    rng = np.random.default_rng(m)
    F = rng.random((12, m))
    ref = np.ones(m) * 1.1
    exact = hypervolume(F, ref)
    assert exact == pytest.approx(brute_hv(F, ref), rel=0.02)
    # one point: a box
    assert hypervolume(F[:1], ref) == pytest.approx(np.prod(ref - F[0]))


def test_plane_hypervolume_in_accuracy_log_compression():
    hv = plane_hypervolume([0.9, 0.8, 0.4], [10.0, 100.0, 1000.0], reference=(0.5, 0.0))
    # (0.9, 1) and (0.8, 2): area = 0.4*1 + 0.3*1 ; the 0.4-accuracy point is below the reference
    assert hv.value == pytest.approx(0.4 + 0.3)
    assert hv.reference == (0.5, 0.0) and hv.front_size == 3 and hv.n_points == 3
    assert plane_hypervolume([0.9, math.nan], [10, 10]).n_points == 1
    assert hv.to_dict()["reference"] == [0.5, 0.0]


def test_knee_point():
    # a front with an obvious bulge at (1, 1)
    F = np.array([[0, 10], [1, 1], [10, 0], [5, 5]], dtype=float)
    assert knee_point(F) == 1
    assert knee_point(F[[0, 2]]) in (0, 1)
    assert knee_point(np.array([[3.0, 3.0]])) == 0
    with pytest.raises(ValueError):
        knee_point(np.zeros((0, 2)))


ROWS = [
    {"val_accuracy": 0.95, "compression_ratio": 3.0, "params": 1000},
    {"val_accuracy": 0.93, "compression_ratio": 9.0, "params": 333},
    {"val_accuracy": 0.90, "compression_ratio": 20.0, "params": 150},
    {"val_accuracy": 0.70, "compression_ratio": 80.0, "params": 37},
    {"val_accuracy": float("nan"), "compression_ratio": 200.0, "params": 15},
]


def test_parse_pick_round_trip():
    p = parse_pick("max val_accuracy where compression_ratio >= 8")
    assert p == Pick("max", "val_accuracy", (Condition("compression_ratio", ">=", 8.0),))
    assert str(p) == "max val_accuracy where compression_ratio >= 8"
    q = parse_pick("  MIN params WHERE val_accuracy>=0.9 and compression_ratio < 1e3 ")
    assert q.kind == "min" and q.metric == "params" and len(q.conditions) == 2
    assert q.conditions[1] == Condition("compression_ratio", "<", 1000.0)
    assert parse_pick("knee") == Pick("knee")
    assert parse_pick("knee where val_accuracy > 0.8").conditions[0].op == ">"
    assert parse_pick(str(q)) == q


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    ("best val_accuracy", "must start with"),
    ("max", "needs a metric"),
    ("max where x >= 1", "needs a metric"),
    ("max val_accuracy compression_ratio >= 8", "expected 'where'"),
    ("max val_accuracy where compression_ratio >=", "incomplete"),
    ("max val_accuracy where compression_ratio => 8", "cannot read|not a comparison"),
    ("max val_accuracy where compression_ratio >= eight", "not a number"),
    ("max val_accuracy where a >= 1 or b >= 2", "join conditions with 'and'"),
    ("max val_accuracy where a >= 1 $", "cannot read"),
])
def test_parse_pick_errors_are_clear(text, fragment):
    with pytest.raises(PickError, match=fragment):
        parse_pick(text)


def test_selection_rules():
    assert pick(ROWS, "max val_accuracy where compression_ratio >= 8") == 1
    assert pick(ROWS, "min params where val_accuracy >= 0.9") == 2
    assert pick(ROWS, "max compression_ratio") == 4
    assert pick(ROWS, "max val_accuracy") == 0  # nan rows never win
    assert max_subject_to(ROWS, "val_accuracy", Condition("compression_ratio", ">=", 15)) == 2
    assert min_subject_to(ROWS, "params", Condition("val_accuracy", ">", 0.92)) == 1
    knee = pick(ROWS, "knee")
    assert knee in (1, 2)
    assert pick(ROWS, "knee where compression_ratio >= 10") in (2, 3)
    assert pick(ROWS, "knee", objectives=[("val_accuracy", "max"), ("params", "min")]) in (1, 2)


def test_selection_errors_say_what_to_change():
    with pytest.raises(PickError, match=r"no trial satisfies.*the best is 0\.95"):
        pick(ROWS, "min params where val_accuracy >= 0.99")
    with pytest.raises(PickError, match="no trial has a value for 'latency'.*metrics present"):
        pick(ROWS, "min latency")
    with pytest.raises(PickError, match="no finished trials"):
        pick([], "knee")
