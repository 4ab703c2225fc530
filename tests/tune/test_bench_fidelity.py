"""`ranksearch bench fidelity` on a tiny setting: digits, 3 epochs per trial, a few epochs of budget."""

from __future__ import annotations

import json

import pytest

from ranksearch.bench import fidelity
from ranksearch.training import full_train_size, trial_samples

pytestmark = pytest.mark.slow  # real training: about 40 s for the module on 2 cores


@pytest.fixture(scope="module")
def space():
    return fidelity.prepare_space("digits", epochs=3)


@pytest.fixture(scope="module")
def report(space):
    pytest.importorskip("syne_tune", reason="the bench extra: pip install --no-deps syne-tune")
    return fidelity.run_benchmark(space, budget="12ep", seeds=2, strategies=["random", "bayes"],
                                  schedulers=list(fidelity.SCHEDULERS), workers=2, grace=1, eta=3)


def test_every_run_spends_the_same_epoch_budget_and_never_more(space, report):
    per_trial = trial_samples(space) / full_train_size(space)  # 2.4 full-epoch equivalents
    assert report["budget_epochs"] == 12 and report["max_epochs"] == 3
    assert len(report["runs"]) == 2 * 2 * 3
    for run in report["runs"]:
        assert 0 < run["spent_epochs"] <= 12 + 1e-9, run
        spent = [s for s, _ in run["curve"]]
        hv = [v for _, v in run["curve"]]
        assert spent == sorted(spent) and hv == sorted(hv)  # cost and hypervolume only grow
        if run["scheduler"] == "fifo":
            # every FIFO trial runs all 3 epochs, and a 6th would not have fitted
            assert run["pruned"] == 0 and run["spent_epochs"] == pytest.approx(run["trials"] * per_trial, abs=1e-3)
            assert run["trials"] == int(12 // per_trial)


def test_successive_halving_stops_trials_and_runs_more_of_them(report):
    by = {(r["strategy"], r["scheduler"], r["seed"]): r for r in report["runs"]}
    for (strategy, scheduler, seed), run in by.items():
        if scheduler != "fifo":  # a stopped trial frees budget: never fewer trials than FIFO
            assert run["trials"] >= by[(strategy, "fifo", seed)]["trials"], run
    # the first trials at a rung are promoted leniently, so count over all runs of a scheduler
    for scheduler in ("mo_asha", "syne_moasha"):
        runs = [r for r in report["runs"] if r["scheduler"] == scheduler]
        fifo = [r for r in report["runs"] if r["scheduler"] == "fifo"]
        assert sum(r["pruned"] for r in runs) > 0
        assert sum(r["trials"] for r in runs) > sum(r["trials"] for r in fifo)


def test_summary_compares_each_scheduler_with_fifo_of_the_same_strategy_and_seed(report):
    rows = {(s["strategy"], s["scheduler"]): s for s in report["summaries"]}
    assert set(rows) == {(a, b) for a in ("random", "bayes") for b in fidelity.SCHEDULERS}
    for (strategy, scheduler), s in rows.items():
        assert len(s["median"]) == fidelity.CHECKPOINTS and s["checkpoints"][-1] == pytest.approx(12)
        assert all(lo <= m <= hi for lo, m, hi in zip(s["low"], s["median"], s["high"], strict=True))
        finals = sorted(r["final_hypervolume"] for r in report["runs"]
                        if r["strategy"] == strategy and r["scheduler"] == scheduler)
        assert s["median"][-1] == pytest.approx(sum(finals) / 2)  # median of two seeds
        if scheduler == "fifo":
            assert s["vs_fifo"] == [1.0, 1.0] and all(v is not None and v <= 1.0 for v in s["to_99"])
    # the trained epochs are shared: fewer than the runs consumed in configuration-epochs
    consumed = sum(r["spent_epochs"] for r in report["runs"]) * 1438 / 1150
    assert 0 < report["epochs_trained"] < consumed
    text = fidelity.format_report(report)
    assert "syne_moasha" in text and "99% of FIFO at" in text
    row = next(line for line in text.splitlines() if line.split()[:2] == ["bayes", "mo_asha"])
    s = rows[("bayes", "mo_asha")]
    assert row.split()[2:4] == [f"{s['median'][2]:.4f}", f"{s['median'][4]:.4f}"]  # hv at 30% and 50%


def test_a_run_is_reproducible_from_its_seed(space, tmp_path):
    from ranksearch.budget import parse_budget

    curves = fidelity.Curves(space, tmp_path)
    one = fidelity.run_one(space, "random", "mo_asha", 3, parse_budget("8ep"), curves, workers=2)
    two = fidelity.run_one(space, "random", "mo_asha", 3, parse_budget("8ep"), curves, workers=2)
    assert one.curve == two.curve and one.pruned == two.pruned and one.trials == two.trials


def test_a_run_spends_its_budget_when_the_planned_trial_count_runs_out(space, tmp_path):
    """The strategy plans 1 trial (an estimate too low): the run still goes on while the next
    full trial fits the budget, as a FIFO run with the right estimate does."""
    from ranksearch.budget import parse_budget

    curves = fidelity.Curves(space, tmp_path)
    short = fidelity.run_one(space, "random", "fifo", 3, parse_budget("8ep"), curves, workers=2,
                             options={"budget": 1})
    right = fidelity.run_one(space, "random", "fifo", 3, parse_budget("8ep"), curves, workers=2)
    assert right.trials == 3 and short.trials == 3  # 2.4 ep-eq each: a fourth would pass 8
    assert short.spent_epochs == pytest.approx(right.spent_epochs)


def test_seeds_in_worker_processes_give_the_runs_of_one_process(space, report, tmp_path):
    """--jobs 2: each seed in its own spawned process with its own curves, the same runs."""
    parallel = fidelity.run_benchmark(space, budget="12ep", seeds=2, strategies=["random"],
                                      schedulers=["fifo", "mo_asha"], workers=2, grace=1, eta=3, jobs=2,
                                      workdir=tmp_path)
    assert parallel["jobs"] == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["seed-0", "seed-1"]
    serial = {(r["strategy"], r["scheduler"], r["seed"]): r for r in report["runs"]}
    assert len(parallel["runs"]) == 4
    for run in parallel["runs"]:
        twin = serial[(run["strategy"], run["scheduler"], run["seed"])]
        assert run["curve"] == twin["curve"] and run["trials"] == twin["trials"], run
    assert parallel["epochs_trained"] > 0 and parallel["train_seconds"] > 0
    with pytest.raises(fidelity.FidelityBenchError, match="--jobs 0"):
        fidelity.run_benchmark(space, budget="12ep", seeds=1, jobs=0)


def test_cli_writes_the_report_and_refuses_a_trial_budget(tmp_path, capsys):
    out = tmp_path / "out"
    code = fidelity.main(["digits", "--epochs", "2", "--budget", "5ep", "--seeds", "1", "--strategies", "random",
                          "--schedulers", "fifo,mo_asha", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "fidelity.json").read_text())
    assert [s["scheduler"] for s in report["summaries"]] == ["fifo", "mo_asha"]
    assert (out / "fidelity.png").stat().st_size > 0
    assert "mo_asha" in capsys.readouterr().out
    assert fidelity.main(["digits", "--budget", "40", "--out", str(out)]) == 2
    assert "not trials" in capsys.readouterr().err
    assert fidelity.main(["digits", "--budget", "5ep", "--schedulers", "hyperband", "--out", str(out)]) == 2
    assert "unknown schedulers ['hyperband']" in capsys.readouterr().err
