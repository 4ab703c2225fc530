"""The objectives module: direction, log scale, worst values and eligibility, decided once."""

from __future__ import annotations

import math

import pytest

from ranksearch.objectives import WORST_MEASURED, Objectives
from ranksearch.trial import TrialResult

OBJ = Objectives.from_pairs([("val_accuracy", "max"), ("compression_ratio", "max"), ("flops", "min")],
                            dense_params=1_000, min_compression=2.0)


def test_vector_negates_maximised_and_logs_costs() -> None:
    r = TrialResult(ranks=(1,), metrics={"val_accuracy": 0.9, "params": 100.0, "flops": 1e6})
    assert OBJ.vector(r) == pytest.approx((-0.9, -1.0, 6.0))  # compression 10x from params
    assert OBJ.vector(r, log=False) == pytest.approx((-0.9, -10.0, 1e6))


def test_unusable_results_count_as_worst_but_keep_exact_costs() -> None:
    failed = TrialResult(ranks=(1,), status="failed", metrics={})
    v = OBJ.vector(failed, cost={"params": 100.0, "compression_ratio": 10.0, "flops": 1e6})
    assert v == pytest.approx((0.0, -1.0, 6.0))
    user = Objectives.from_pairs([("loss", "min")])
    assert user.vector(TrialResult(ranks=(), status="failed")) == (WORST_MEASURED,)
    assert math.isinf(OBJ.vector(failed)[1])  # no cost known at all: never preferred


def test_eligibility_needs_ok_finite_objectives_and_constraints() -> None:
    def res(**m: float) -> TrialResult:
        return TrialResult(ranks=(1,), metrics=dict(m))

    assert OBJ.eligible(res(val_accuracy=0.9, params=100.0, flops=1.0))
    assert not OBJ.eligible(res(val_accuracy=0.9, params=600.0, flops=1.0))  # 1.67x < 2x
    assert not OBJ.eligible(res(val_accuracy=math.nan, params=100.0, flops=1.0))
    assert not OBJ.eligible(res(val_accuracy=0.9, params=100.0))  # flops missing
    pruned = TrialResult(ranks=(1,), status="pruned", metrics={"val_accuracy": 0.9, "params": 100.0,
                                                               "flops": 1.0})
    assert not OBJ.eligible(pruned) and OBJ.usable(pruned)


def test_partial_vector_skips_latency_and_uses_exact_costs() -> None:
    obj = Objectives.from_pairs([("val_accuracy", "max"), ("params", "min"), ("latency", "min")])
    v = obj.partial_vector({"val_accuracy": 0.5}, {"params": 1000.0})
    assert v == pytest.approx((-0.5, 3.0))
    assert obj.partial_vector({}, {"params": 1000.0})[0] == math.inf


def test_a_space_may_put_an_objective_on_a_linear_or_log_scale() -> None:
    from ranksearch.objectives import Objective
    from ranksearch.space import SearchSpace, SpaceError

    base = {"name": "s", "training": {"function": "ranksearch.bench.hpo:cifar10"},
            "hyperparameters": {"Op0": {"choices": ["none", "skip_connect"]}},
            "strategy": {"name": "random", "budget": 3}}

    def objectives(**params: str) -> Objectives:
        spec = {**base, "objectives": [{"name": "val_accuracy"}, {"name": "params", "direction": "min", **params},
                                       {"name": "loss", "direction": "min", "scale": "log"}]}
        return Objectives.from_space(SearchSpace.from_dict(spec, source="<test>"))

    m = {"val_accuracy": 0.9, "params": 1000.0, "loss": 0.01}
    assert objectives().vector(m) == pytest.approx((-0.9, 3.0, -2.0))  # counts on log10 by default
    assert objectives(scale="linear").vector(m) == pytest.approx((-0.9, 1000.0, -2.0))
    assert Objective("params", "min", scale="linear").minimised(1000.0, log=True) == 1000.0
    with pytest.raises(SpaceError, match="scale"):
        objectives(scale="sqrt")
