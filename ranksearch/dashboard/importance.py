"""Hyperparameter importance per objective, by Optuna's evaluators (nothing computed by hand).

The finished trials of a search become an in-memory Optuna study per objective
(`optuna.trial.create_trial` with the trial's ranks and hyperparameter values as params, each
with its distribution), and `optuna.importance.get_param_importances` scores the params with
fANOVA (a seeded random forest: deterministic for a seed; ~2 s for 200 trials of 18 params on
2 cores, ~25 s for 1,000) or PED-ANOVA (deterministic, under a second for 1,000 trials, but it
compares the top 10% of trials with the rest: noisy for a few dozen). `auto`, the default,
takes fANOVA up to `FANOVA_UP_TO` trials and PED-ANOVA above.

    observations = [Observation(params={"r0": 3, "lr": 0.01}, values={"val_accuracy": 0.9}), ...]
    importances(observations, distributions, [("val_accuracy", "max")])
    # -> {"val_accuracy": {"lr": 0.93, "r0": 0.07}}

PED-ANOVA scores conditional hyperparameters (momentum only with SGD) too; fANOVA scores only
the params every trial has, so it leaves them out.
Distributions come from the domains the search logged (`hp_domain.<name>`, the same fields as
`HyperSpace.to_dict()`, read back into `HyperSpace.distributions()`'s Optuna types); rank
elements are integer params over the ranks seen.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ranksearch.errors import RanksearchError
from ranksearch.space.hyper import domain_distribution as distribution_of  # the logged domain's

__all__ = ["MIN_TRIALS", "Observation", "distribution_of", "importances", "rank_distributions", "resolve"]

#: Fewer finished trials than this, and the dashboard says so instead of showing importances.
MIN_TRIALS = 8
FANOVA_UP_TO = 200
EVALUATORS = ("auto", "fanova", "ped-anova")


@dataclass(frozen=True)
class Observation:
    """One finished trial: its params (rank elements and active hyperparameters) and metrics."""

    params: Mapping[str, Any]
    values: Mapping[str, float]


def rank_distributions(observations: Sequence[Observation], elements: Sequence[str]) -> dict[str, Any]:
    """An integer distribution per rank element, over the ranks the trials used."""
    import optuna.distributions as d

    out: dict[str, Any] = {}
    for name in elements:
        seen = [int(o.params[name]) for o in observations if name in o.params]
        if seen:
            out[name] = d.IntDistribution(min(seen), max(seen))
    return out


def resolve(name: str, n_trials: int) -> str:
    """The evaluator `name` means for `n_trials` finished trials ("auto": by their number)."""
    if name not in EVALUATORS:
        raise RanksearchError(f"unknown importance evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
    if name == "auto":
        return "fanova" if n_trials <= FANOVA_UP_TO else "ped-anova"
    return name


def _evaluator(name: str, seed: int) -> Any:
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    if name == "fanova":
        return FanovaImportanceEvaluator(seed=seed)
    if name == "ped-anova":
        return PedAnovaImportanceEvaluator()
    raise RanksearchError(f"unknown importance evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines ("A new study created in memory ...") silenced for the call."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def importances(observations: Sequence[Observation], distributions: Mapping[str, Any],
                objectives: Sequence[tuple[str, str]], *, evaluator: str = "auto", seed: int = 0,
                min_trials: int = MIN_TRIALS) -> dict[str, dict[str, float]]:
    """{objective: {param: importance}} (each objective's importances sum to 1, largest first).

    `objectives` are (metric, "max" | "min") pairs. Only observations with a finite value of the
    objective count (and not one with a value its distribution does not hold: Optuna refuses
    it); an objective with fewer than `min_trials` of them gets no entry.
    """
    import optuna

    resolve(evaluator, 0)  # an unknown name fails before any work
    out: dict[str, dict[str, float]] = {}
    for metric, direction in objectives:
        trials = []
        for o in observations:
            v = o.values.get(metric)
            if v is None or not math.isfinite(float(v)):
                continue
            params = {k: p for k, p in o.params.items() if k in distributions}
            try:
                trials.append(optuna.trial.create_trial(
                    params=params, distributions={k: distributions[k] for k in params}, value=float(v)))
            except ValueError:  # a value its domain does not hold: Optuna refuses the trial
                continue
        if len(trials) < min_trials:
            continue
        with _quiet_optuna(), warnings.catch_warnings():
            study = optuna.create_study(direction="maximize" if direction == "max" else "minimize")
            study.add_trials(trials)
            warnings.simplefilter("ignore")  # ExperimentalWarning, single-value params
            try:
                chosen = _evaluator(resolve(evaluator, len(trials)), seed)
                scores = optuna.importance.get_param_importances(study, evaluator=chosen)
            except (RuntimeError, ValueError):  # e.g. no param that every trial has
                continue
        if scores:
            out[metric] = {k: float(v) for k, v in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))}
    return out
