"""A search's budget: a number of trials, of full-epoch equivalents, or of training samples.

    budget: 40            # trials
    budget: 600ep         # full-epoch equivalents (600 passes over the full training set)
    budget: 2.5e6 samples # training samples (also "2.5M samples", "600k samples")

Benchmarks compare strategies at equal training cost and a multi-fidelity scheduler trades in
it, so a user can say "spend 600 epoch equivalents" rather than guess a trial count. A cost
budget is enforced by the Searcher adapter: it stops proposing when the next trial, run to its
full budget, would take the search past it (finished trials count what they consumed, running
ones what they may still consume). Strategies still need a trial count to plan by (PSTRN's
phases, a GA's generations): `trials_for` estimates it from the expected cost of one trial,
which a successive-halving scheduler lowers. The estimate is only a plan: when a scheduler
stops more trials than expected and every planned trial was asked with budget left,
`CostLimit.extra_trials` says how many more to plan (`Strategy.extend_budget`), so the search
ends because the next trial would not fit, not because the estimate ran out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

UNITS = {"trial": "trials", "trials": "trials", "ep": "epochs", "epoch": "epochs", "epochs": "epochs",
         "sample": "samples", "samples": "samples"}
# a number, an optional thousand / million (k, M) standing alone, then an optional unit
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(?:([kKM])(?=\s|$))?\s*([A-Za-z]*)\s*$")
_MULTIPLIERS = {None: 1.0, "k": 1e3, "K": 1e3, "M": 1e6}


class BudgetError(ValueError):
    """A budget that cannot be read; the message says how to write one."""


@dataclass(frozen=True)
class Budget:
    """`amount` of `kind` ("trials", "epochs" = full-epoch equivalents, or "samples")."""

    kind: str
    amount: float

    @property
    def is_cost(self) -> bool:
        return self.kind != "trials"

    def samples(self, n_train_full: int | None) -> float:
        """The budget in training samples (a cost budget only)."""
        if self.kind == "samples":
            return self.amount
        if self.kind == "epochs":
            if not n_train_full:
                raise BudgetError("a budget in epochs needs the size of the training set, which "
                                  "cannot be read here; give the budget in samples or trials")
            return self.amount * n_train_full
        raise BudgetError("a trial budget has no size in samples")

    def __str__(self) -> str:
        amount = f"{self.amount:g}"
        return {"trials": amount, "epochs": f"{amount}ep", "samples": f"{amount} samples"}[self.kind]

    def to_json(self) -> int | str:
        """What the space file and the search's settings keep: an int for trials, text otherwise."""
        return int(self.amount) if self.kind == "trials" else str(self)


def parse_budget(value: Any, *, what: str = "budget") -> Budget:
    """An int (trials), or text such as '600ep', '600 epochs', '2e6 samples', '1.2M samples',
    '40 trials'."""
    if isinstance(value, Budget):
        return value
    if isinstance(value, bool):
        raise BudgetError(f"{what} {value!r}: give a number of trials (40), of full-epoch "
                          "equivalents (600ep) or of training samples (2e6 samples)")
    if isinstance(value, int):
        if value < 1:
            raise BudgetError(f"{what} {value}: must be at least 1 trial")
        return Budget("trials", float(value))
    if isinstance(value, float) and value.is_integer():
        return parse_budget(int(value), what=what)
    m = _PATTERN.match(str(value)) if isinstance(value, (str, float)) else None
    unit = UNITS.get(m.group(3).lower() if m and m.group(3) else "trials") if m else None
    if m is None or unit is None:
        raise BudgetError(f"{what} {value!r}: write a number of trials (40), of full-epoch "
                          "equivalents (600ep) or of training samples (2e6 samples, 1.2M samples)")
    amount = float(m.group(1)) * _MULTIPLIERS[m.group(2)]
    if not math.isfinite(amount) or amount <= 0:
        raise BudgetError(f"{what} {value!r}: must be positive")
    if unit == "trials":
        if not amount.is_integer():
            raise BudgetError(f"{what} {value!r}: a number of trials is a whole number")
        return Budget("trials", amount)
    return Budget(unit, amount)


def expected_epochs(max_epochs: int, milestones: list[int] | None = None, eta: int | None = None) -> float:
    """Expected epochs one trial trains: all of them (FIFO), or under successive halving with
    rungs at `milestones`, where about 1/eta of the trials reaching a rung go on."""
    if not milestones or not eta:
        return float(max_epochs)
    total, alive, start = 0.0, 1.0, 0
    for m in milestones:
        total += alive * (m - start)
        alive /= eta
        start = m
    return total + alive * (max_epochs - start)


def trials_for(budget: Budget, *, trial_samples: float, n_train_full: int | None,
               expected_fraction: float = 1.0, cap: int = 100_000) -> int:
    """How many trials a strategy should plan for: the budget itself when it counts trials,
    else the budget over one trial's expected cost (`trial_samples` x `expected_fraction`)."""
    if budget.kind == "trials":
        return int(budget.amount)
    per_trial = max(1.0, trial_samples * max(expected_fraction, 1e-9))
    return int(min(cap, max(1, math.floor(budget.samples(n_train_full) / per_trial))))


class CostLimit:
    """A cost budget in training samples, enforced while trials are proposed.

    A new trial may start when what finished trials consumed, plus what each running trial may
    still consume (its full budget, or more if it already reported more), plus the new trial's
    full budget stays within the limit. Trials stopped early by a scheduler give back what they
    did not use, so later trials can start.
    """

    def __init__(self, limit_samples: float, trial_samples: float, *, spent: float = 0.0,
                 expected_fraction: float = 1.0) -> None:
        if trial_samples <= 0:
            raise BudgetError("a cost budget needs the size of one trial in samples (got "
                              f"{trial_samples}); give the budget in trials")
        self.limit = float(limit_samples)
        self.trial_samples = float(trial_samples)
        self.spent = float(spent)  # finished trials and overhead (the dense warm start)
        #: the share of its full budget one trial is expected to use (below 1 under MO-ASHA)
        self.expected_fraction = min(1.0, max(float(expected_fraction), 1e-9))

    def _committed(self, running: list[float]) -> float:
        return self.spent + sum(max(self.trial_samples, seen) for seen in running)

    def allows(self, running: list[float]) -> bool:
        """May one more trial start, with these running trials (samples seen so far each)?"""
        return self._committed(running) + self.trial_samples <= self.limit + 1e-9

    def extra_trials(self, running: list[float]) -> int:
        """How many more trials to plan for once a strategy asked all it planned: what is left
        after the running trials' full budgets, over one trial's expected cost (at least 1 when
        one more may start, 0 when none may)."""
        if not self.allows(running):
            return 0
        left = self.limit - self._committed(running)
        return max(1, math.floor(left / (self.trial_samples * self.expected_fraction) + 1e-9))

    def finish(self, samples: float) -> None:
        self.spent += max(0.0, float(samples))

    def to_dict(self) -> dict[str, float]:
        return {"limit_samples": self.limit, "spent_samples": self.spent, "trial_samples": self.trial_samples}


def plan_more(strategy: Any, limit: CostLimit, running: list[float]) -> int:
    """Extend `strategy`'s plan when it asked every trial it planned for and `limit` still lets
    one more start (see the module docstring); returns the trials added (0: none)."""
    extend = getattr(strategy, "extend_budget", None)
    if not callable(extend) or strategy.n_asked < strategy.budget:
        return 0
    extra = limit.extra_trials(running)
    if extra:
        extend(extra)
    return extra
