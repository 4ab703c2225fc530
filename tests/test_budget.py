"""Search budgets in trials, full-epoch equivalents or samples."""

from __future__ import annotations

import pytest

from ranksearch.budget import Budget, BudgetError, expected_epochs, parse_budget, trials_for


@pytest.mark.parametrize("text, kind, amount", [
    (40, "trials", 40), ("40", "trials", 40), ("40 trials", "trials", 40), ("600ep", "epochs", 600),
    ("600 epochs", "epochs", 600), ("2.5e6 samples", "samples", 2.5e6), ("12.5ep", "epochs", 12.5),
    ("1.2M samples", "samples", 1.2e6), ("600k samples", "samples", 6e5), ("2k", "trials", 2000),
    ("1.5k ep", "epochs", 1500),
])
def test_parse(text, kind, amount):
    b = parse_budget(text)
    assert (b.kind, b.amount) == (kind, amount)
    assert parse_budget(b.to_json()) == b  # what the settings keep reads back the same


@pytest.mark.parametrize("bad", [0, -3, True, "", "ep", "600 parsecs", "1.5 trials", "-2ep", "nan", None, [4],
                                 "1.2m samples", "1.2Msamples", "1.0005k trials"])
def test_bad_budgets_say_how_to_write_one(bad):
    with pytest.raises(BudgetError, match=r"budget"):
        parse_budget(bad)


def test_cost_in_samples_and_trial_estimates():
    assert Budget("epochs", 600).samples(60_000) == 36_000_000
    with pytest.raises(BudgetError):
        Budget("epochs", 10).samples(None)
    # FIFO: every trial trains all 9 epochs; eta 3 with rungs at 1 and 3: 1 + 2/3 + 6/9 epochs
    assert expected_epochs(9) == 9
    assert expected_epochs(9, [1, 3], 3) == pytest.approx(1 + 2 / 3 + 6 / 9)
    b = parse_budget("90ep")
    assert trials_for(b, trial_samples=9 * 1000, n_train_full=1000) == 10
    assert trials_for(b, trial_samples=9 * 1000, n_train_full=1000,
                      expected_fraction=expected_epochs(9, [1, 3], 3) / 9) == 38
    assert trials_for(parse_budget(12), trial_samples=1, n_train_full=None) == 12


def test_cost_limit_admits_a_trial_only_when_its_full_cost_fits():
    from ranksearch.budget import CostLimit

    limit = CostLimit(1000, 300, spent=150)  # 150 spent already (a dense warm start)
    assert limit.allows([])  # 150 + 300 <= 1000
    assert limit.allows([0])  # 150 + 300 (running) + 300 (new) = 750
    assert not limit.allows([0, 0])  # 750 committed, no room for another 300
    limit.finish(100)  # one was stopped early by a scheduler: it gives back what it did not use
    assert limit.allows([0])  # 250 + 300 + 300 = 850
    assert not limit.allows([500])  # a trial past its nominal cost counts what it used: 1050
    with pytest.raises(BudgetError):
        CostLimit(1000, 0)


def test_a_plan_that_ran_out_is_extended_while_the_budget_allows_a_trial():
    from ranksearch.budget import CostLimit, plan_more

    class Planned:  # what plan_more reads of a strategy
        def __init__(self, budget, asked):
            self.budget, self.n_asked, self.added = budget, asked, []

        def extend_budget(self, n):
            self.added.append(n)
            self.budget += n

    limit = CostLimit(3000, 300, expected_fraction=0.25)  # a trial is expected to use 75 samples
    assert limit.extra_trials([0]) == 36  # 3000 - 300 (running) = 2700 left, 75 each
    assert plan_more(Planned(10, 9), limit, [0]) == 0  # one planned trial still to ask
    s = Planned(10, 10)
    assert plan_more(s, limit, [0]) == 36 and s.budget == 46 and s.added == [36]
    full = CostLimit(1000, 300, spent=500)
    assert full.extra_trials([]) == 1  # 500 left: one full trial fits, and at least one is planned
    assert full.extra_trials([0]) == 0 and plan_more(Planned(3, 3), full, [0]) == 0  # 800 committed
    assert plan_more(object(), limit, []) == 0  # a strategy that cannot extend keeps its count
