"""`ranksearch bench hpo`: NAS-Bench-201's exact fronts and hypervolume regret, on a small setting."""

from __future__ import annotations

import numpy as np
import pytest

from ranksearch.bench import hpo
from ranksearch.userfn import evaluate


def test_exact_front_is_non_dominated_and_has_zero_regret():
    table = hpo.load_table("cifar10")
    assert len(table.keys) == 15_625
    pts = table.normalised(np.arange(len(table.keys)))
    assert pts.min() == 0.0 and pts.max() == 1.0  # normalised over the whole table
    front = pts[table.front]
    # no cell of the table dominates a front cell
    for p in front:
        dominated = np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)
        assert not dominated.any()
    # and every cell off the front is dominated by (or equal to) a front cell
    off = np.setdiff1d(np.arange(len(pts)), table.front)
    sample = off[:: max(1, len(off) // 300)]
    assert all(np.any(np.all(front <= pts[i], axis=1)) for i in sample)
    assert table.regret(table.front) == pytest.approx(0.0, abs=1e-12)
    assert table.regret([int(off[0])]) > 0.5


def test_the_user_function_looks_the_cell_up_through_the_adapter():
    space = hpo.space_for("cifar100", 10)
    assert space.n_ranks == 0 and space.hyper.names == hpo.EDGES
    cell = {e: "nor_conv_3x3" for e in hpo.EDGES}
    result = evaluate(space, (), cell)
    table = hpo.load_table("cifar100")
    row = table.index["333333"]
    assert result.ok and result.metrics["val_accuracy"] == pytest.approx(table.accuracy[row])
    assert result.metrics["params"] == pytest.approx(table.size[row] * 1e6)


def test_small_benchmark_regret_is_bounded_and_random_improves():
    report = hpo.run_benchmark(tasks=["cifar10"], strategies=["random", "optuna-tpe"], evals=[10, 60], seeds=3)
    runs = report["runs"]
    assert len(runs) == 6 and all(r["evaluations"] == 60 for r in runs)
    assert all(0.0 <= v <= 1.0 for r in runs for v in r["regret"].values())
    for r in runs:  # more evaluations never lose hypervolume
        assert r["regret"]["60"] <= r["regret"]["10"]
    random = next(s for s in report["summary"] if s["strategy"] == "random")
    assert random["60"]["median"] < random["10"]["median"]
    assert "regret@60" in hpo.format_table(report)


def test_cli_refuses_bad_options(capsys):
    assert hpo.main(["--tasks", "mnist"]) == 2
    assert "unknown task 'mnist'" in capsys.readouterr().err
    assert hpo.main(["--strategies", "random,nope"]) == 2
    assert "strategy 'nope' is unknown" in capsys.readouterr().err
    assert hpo.main(["--strategies", "bayes:n_startup"]) == 2  # not KEY=VALUE
    assert "not KEY=VALUE" in capsys.readouterr().err
    assert hpo.main(["--strategies", "optuna-tpe:seed=3"]) == 2
    assert "takes no options" in capsys.readouterr().err
    assert hpo.main(["--strategies", "bayes:no_such_option=1"]) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert hpo.main(["--evals", "0,10"]) == 2


def test_strategy_options_reach_the_strategy():
    assert hpo.parse_entry("bayes:sampler=gp:n_startup=10") == ("bayes", {"sampler": "gp", "n_startup": 10})
    assert hpo.parse_entry("random") == ("random", {})
    # n_startup=5 then TPE: a different sequence of cells from the default (20 random startup)
    space = hpo.space_for("cifar10", 12)
    default = hpo.run_ours(space, "bayes", budget=12, seed=0)
    early = hpo.run_ours(space, "bayes:n_startup=5", budget=12, seed=0)
    assert len(default) == len(early) == 12 and default[:5] == early[:5] and default != early


def test_bayes_with_the_gp_sampler_asks_what_optunas_gp_asks(monkeypatch):
    """Our wrapper adds nothing and hides nothing on this space: seeded alike, `bayes` with the GP
    sampler evaluates the cells Optuna's GPSampler evaluates, in order. (It asked two at a time
    and logged the size, and was twice as far from the front as the same sampler driven directly.)"""
    from ranksearch.strategies import bayes

    make = bayes.OptunaStrategy._make_sampler
    monkeypatch.setattr(bayes.OptunaStrategy, "_make_sampler", lambda self, seed: make(self, 3))
    space = hpo.space_for("imagenet16-120", 13)
    ours = hpo.run_ours(space, "bayes:sampler=gp:n_startup=10:startup=sampler", budget=13, seed=3)
    theirs = hpo.run_optuna(space, "optuna-gp", budget=13, seed=3)
    assert ours == theirs and len(set(ours[10:])) == 3


def test_deterministic_is_an_option_of_the_gp_sampler_only():
    from ranksearch.strategies import StrategyError, get

    space = hpo.space_for("cifar10", 20)
    s = get("bayes", space, seed=0, budget=20, sampler="gp", deterministic=True)
    s.ask_proposal()
    assert s._study.sampler._deterministic is True
    with pytest.raises(StrategyError, match="deterministic=true is an option of the GP sampler"):
        get("bayes", space, seed=0, budget=20, deterministic=True)


def test_bayes_tells_a_repeated_configuration_once():
    """TPE proposes configurations it has seen (a quarter of its proposals here): the study gets
    each measurement once as a COMPLETE trial and every repeat as FAILED (ignored by samplers);
    telling repeats their value again made TPE's good-density pile up on them."""
    from optuna.trial import TrialState

    from ranksearch.strategies import get

    space = hpo.space_for("cifar10", 80)
    s = get("bayes", space, seed=0, budget=80)
    for i in range(80):
        p = s.ask_proposal()
        s.tell(f"t{i}", evaluate(space, p.ranks, p.hparams, trial_id=f"t{i}"))
    trials = s._study.get_trials(deepcopy=False)
    complete = [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(set(complete)) == 80
    assert sum(t.state == TrialState.FAIL for t in trials) > 0  # repeats were proposed, and failed
