"""Hyperparameter importance (Optuna's evaluators over an in-memory study), on synthetic trials."""

from __future__ import annotations

import math
import random

import pytest

from ranksearch.dashboard.importance import (
    EVALUATORS,
    FANOVA_UP_TO,
    MIN_TRIALS,
    Observation,
    distribution_of,
    importances,
    rank_distributions,
    resolve,
)
from ranksearch.errors import RanksearchError

DOMAINS = {
    "training.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True, "default": 1e-3},
    "training.label_smoothing": {"type": "float", "low": 0.0, "high": 0.2, "default": 0.0},
    "training.optimizer.name": {"type": "categorical", "choices": ["adamw", "sgd"], "default": "adamw"},
    "training.optimizer.momentum": {"type": "float", "low": 0.8, "high": 0.99, "log": False,
                                    "when": {"training.optimizer.name": ["sgd"]}, "default": 0.9},
    "training.batch_size": {"type": "categorical", "choices": [32, 64, 128], "default": 64},
}
ELEMENTS = ("fc1.r0", "fc1.r1")


def synthetic(n: int, seed: int = 0) -> list[Observation]:
    """Accuracy peaks at lr = 10^-2.5 and ignores everything else; compression follows the ranks."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lr = 10 ** rng.uniform(-4, -1)
        params = {"training.optimizer.lr": lr, "training.label_smoothing": rng.uniform(0, 0.2),
                  "training.optimizer.name": rng.choice(["adamw", "sgd"]), "training.batch_size": rng.choice([32, 64, 128]),
                  "fc1.r0": rng.randint(1, 12), "fc1.r1": rng.randint(1, 12)}
        if params["training.optimizer.name"] == "sgd":
            params["training.optimizer.momentum"] = rng.uniform(0.8, 0.99)
        acc = 0.95 - 0.1 * (math.log10(lr) + 2.5) ** 2 + rng.gauss(0, 0.003)
        out.append(Observation(params, {"val_accuracy": acc, "params": 100.0 * params["fc1.r0"] + params["fc1.r1"]}))
    return out


def distributions(obs: list[Observation]) -> dict:
    return {**{k: distribution_of(d) for k, d in DOMAINS.items()}, **rank_distributions(obs, ELEMENTS)}


def test_distributions_follow_the_logged_domains():
    import optuna.distributions as d

    lr = distribution_of(DOMAINS["training.optimizer.lr"])
    assert isinstance(lr, d.FloatDistribution) and lr.log and (lr.low, lr.high) == (1e-4, 1e-1)
    assert distribution_of(DOMAINS["training.batch_size"]).choices == (32, 64, 128)
    step = distribution_of({"type": "int", "low": 2, "high": 10, "step": 2, "log": False})
    assert isinstance(step, d.IntDistribution) and step.step == 2
    ranks = rank_distributions(synthetic(30), ELEMENTS)
    assert (ranks["fc1.r0"].low, ranks["fc1.r0"].high) == (1, 12)


@pytest.mark.parametrize("evaluator", ["fanova", "ped-anova"])
def test_the_parameter_accuracy_depends_on_ranks_first(evaluator):
    obs = synthetic(60)
    out = importances(obs, distributions(obs), [("val_accuracy", "max"), ("params", "min")], evaluator=evaluator)
    acc = out["val_accuracy"]
    assert next(iter(acc)) == "training.optimizer.lr"
    assert acc["training.optimizer.lr"] > 0.5 > acc["training.label_smoothing"]
    assert sum(acc.values()) == pytest.approx(1.0)
    assert list(acc.values()) == sorted(acc.values(), reverse=True)
    # params = 100 r0 + r1: the first rank element matters most, no hyperparameter does
    assert next(iter(out["params"])) == "fc1.r0"
    # the same trials give the same importances (PED-ANOVA is deterministic, fANOVA seeded)
    again = importances(obs, distributions(obs), [("val_accuracy", "max"), ("params", "min")], evaluator=evaluator)
    assert again == out


def test_auto_takes_fanova_for_few_trials_and_ped_anova_for_many():
    assert [resolve("auto", n) for n in (8, FANOVA_UP_TO, FANOVA_UP_TO + 1)] == ["fanova", "fanova", "ped-anova"]
    assert EVALUATORS[0] == "auto"


def test_ped_anova_scores_conditional_hyperparameters():
    obs = synthetic(60)
    out = importances(obs, distributions(obs), [("val_accuracy", "max")], evaluator="ped-anova")
    assert "training.optimizer.momentum" in out["val_accuracy"]


def test_too_few_trials_give_no_importances():
    obs = synthetic(MIN_TRIALS - 1)
    assert importances(obs, distributions(obs), [("val_accuracy", "max")]) == {}
    # trials without a finite value of the objective do not count
    nan = [Observation(o.params, {"val_accuracy": float("nan")}) for o in synthetic(20)]
    assert importances(obs + nan, distributions(obs + nan), [("val_accuracy", "max")]) == {}


def test_unknown_evaluator_is_an_error():
    with pytest.raises(RanksearchError, match="fanova"):
        importances(synthetic(10), {}, [("val_accuracy", "max")], evaluator="shap")
