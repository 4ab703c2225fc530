"""A policy-gradient agent that picks ranks layer by layer (AMC-style), in plain numpy.

An episode walks the rank elements in order. At each element the agent sees AMC-like state
features (position, layer, the element's share of the dense parameters, parameters already
spent, parameters left in the budget, its previous action, and the trade-off weight lambda of
this episode) and picks a level: one of `levels` points spaced evenly on a log scale between
the element's bounds. Actions that would make the budget (`max_params`) unreachable, with every
later element at its lowest, are masked out. The episode's configuration is trained; its
reward arrives at the end:

- `reward="accuracy_log"` (default): accuracy - lambda * log(params / dense params);
- `reward="error_log"`: -(1 - accuracy) * log(params) (AMC's FLOPs-constrained form).

Each episode draws lambda from `lambdas` and the policy sees it, so one agent learns the whole
trade-off curve (the front) instead of one point. Updates use PPO's clipped objective
(default) or REINFORCE (`algorithm="reinforce"`), both with a per-lambda moving-average
baseline, with Adam, after every
batch of `episodes` episodes (the batch is proposed at once, for parallel workers). The policy is
a one-hidden-layer tanh network with hand-written gradients: small, fast and deterministic.

Hyperparameters are further decisions after the ranks: the episode goes on through each
hyperparameter (its features: position, layer feature 1, no parameter share) and picks one of
`levels` points spread evenly over its grid level codes; an inactive conditional parameter's
pick is ignored (`Strategy.canon`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ranksearch.strategies import sampling
from ranksearch.strategies.base import Proposal
from ranksearch.strategies.batch import BatchStrategy
from ranksearch.strategies.options import StrategyOptions, option
from ranksearch.trial import RankConfig

_REWARDS = ("accuracy_log", "error_log")
_ALGORITHMS = ("reinforce", "ppo")


class MLPPolicy:
    """Masked softmax over levels from a tanh hidden layer; gradients by hand, Adam updates."""

    def __init__(self, n_features: int, n_actions: int, hidden: int, rng: np.random.Generator,
                 lr: float) -> None:
        self.params = {
            "W1": rng.normal(0.0, 1.0 / math.sqrt(n_features), (hidden, n_features)),
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, 0.1 / math.sqrt(hidden), (n_actions, hidden)),
            "b2": np.zeros(n_actions),
        }
        self.lr = lr
        self._m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._t = 0

    def probs(self, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Action probabilities (batch x actions) and the hidden activations."""
        h = np.tanh(x @ self.params["W1"].T + self.params["b1"])
        z = h @ self.params["W2"].T + self.params["b2"]
        z = np.where(mask, z, -np.inf)
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True), h

    def grad_log_prob(self, x: np.ndarray, mask: np.ndarray, actions: np.ndarray,
                      weights: np.ndarray, entropy: float = 0.0) -> dict[str, np.ndarray]:
        """Gradient of sum_t weights[t] * log pi(a_t | x_t) (+ entropy bonus), for ascent."""
        p, h = self.probs(x, mask)
        onehot = np.zeros_like(p)
        onehot[np.arange(len(actions)), actions] = 1.0
        dz = (onehot - p) * weights[:, None]
        if entropy:
            logp = np.log(np.where(mask, p, 1.0))
            ent = -(p * logp).sum(axis=1, keepdims=True)
            dz += entropy * (-p * (logp + ent)) * mask
        dh = (dz @ self.params["W2"]) * (1.0 - h**2)
        return {"W2": dz.T @ h, "b2": dz.sum(axis=0), "W1": dh.T @ x, "b1": dh.sum(axis=0)}

    def ascend(self, grads: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999) -> None:
        self._t += 1
        for k, g in grads.items():
            self._m[k] = beta1 * self._m[k] + (1 - beta1) * g
            self._v[k] = beta2 * self._v[k] + (1 - beta2) * g * g
            m_hat = self._m[k] / (1 - beta1**self._t)
            v_hat = self._v[k] / (1 - beta2**self._t)
            self.params[k] += self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)


@dataclass
class Episode:
    """One walk over the elements: what was seen, allowed, chosen, and (later) the reward."""

    lam: float
    features: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    log_probs: np.ndarray
    ranks: RankConfig
    reward: float | None = None


@dataclass(frozen=True)
class RLOptions(StrategyOptions):
    algorithm: str = option("ppo", "policy update: PPO's clipped objective or REINFORCE",
                            choices=_ALGORITHMS)
    reward: str = option("accuracy_log", "accuracy - lambda * log(params / dense) "
                         "('accuracy_log') or AMC's -(1 - accuracy) * log(params) ('error_log')",
                         choices=_REWARDS)
    lambdas: tuple[float, ...] = option(
        (0.002, 0.006, 0.02, 0.06, 0.2), "trade-off weights, one per episode in turn (the "
        "policy sees it, so one agent learns the whole front)", low=0, min_len=1)
    episodes: int = option(10, "episodes per batch (proposed at once, one policy update each)",
                           low=1)
    levels: int = option(8, "rank levels per element, log-spaced between its bounds", low=2)
    hidden: int = option(16, "hidden units of the policy network", low=1)
    lr: float = option(0.03, "Adam learning rate of the policy", low=0, low_open=True)
    warmup: int = option(1, "batches of uniform exploration before the policy acts", low=0)
    entropy: float = option(0.01, "entropy bonus weight", low=0)
    baseline_decay: float = option(0.8, "moving-average decay of the per-lambda reward baseline",
                                   low=0, high=1)
    ppo_clip: float = option(0.2, "PPO's ratio clip", low=0, low_open=True)
    ppo_epochs: int = option(4, "PPO passes over each batch", low=1)


class PolicyGradient(BatchStrategy):
    """PPO (default) or REINFORCE over per-element rank levels, conditioned on lambda."""

    name = "rl"
    Options = RLOptions
    opts: RLOptions

    def __init__(self, space: Any, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        o = self.opts
        self.algorithm = o.algorithm
        self.reward_kind = o.reward
        self.lambdas = o.lambdas
        self.episodes = o.episodes
        self.levels = o.levels
        self.hidden = o.hidden
        self.lr = o.lr
        self.warmup = o.warmup
        self.entropy = o.entropy
        self.baseline_decay = o.baseline_decay
        self.ppo_clip = o.ppo_clip
        self.ppo_epochs = o.ppo_epochs
        self.policy: MLPPolicy | None = None
        self.batch = 0
        self.episode_count = 0
        self._batch: list[Episode] = []
        self._baseline: dict[float, float] = {}
        self._level_values: list[list[int]] = []
        self._layer_of: list[float] = []
        self._share: list[float] = []
        self._lam_scale = max(self.lambdas) or 1.0

    # -- environment --------------------------------------------------------------------------
    def _start(self) -> None:
        for values in self.rank_values:
            pos = sampling.log_positions(values)
            targets = np.linspace(0.0, 1.0, self.levels)
            self._level_values.append([int(values[int(np.argmin(np.abs(pos - t)))]) for t in targets])
        for codes in self.values[self.n_ranks:]:  # a hyperparameter's levels: evenly over its codes
            targets = np.linspace(0.0, len(codes) - 1, self.levels)
            self._level_values.append([int(codes[int(round(t))]) for t in targets])
        layers = [e.members[0][0] if e.members else e.name for e in self.elements]
        order = list(dict.fromkeys(layers))
        self._layer_of = [order.index(name) / max(1, len(order) - 1) for name in layers]
        self._layer_of += [1.0] * (self.n - self.n_ranks)
        # an element's share: parameters it adds going from its lowest to its highest value
        low, dense = self.lowest, float(self.space.dense_params)
        self._share = [
            (self.params(low[:i] + (self.values[i][-1],) + low[i + 1:]) - self.params(low)) / dense
            for i in range(self.n)
        ]
        self.policy = MLPPolicy(8, self.levels, self.hidden, self.rng, self.lr)

    def _features(self, i: int, prefix: list[int], prev: int, lam: float) -> np.ndarray:
        dense = float(self.space.dense_params)
        spent = self.params(tuple(prefix) + self.lowest[i:]) / dense
        budget = (self.max_params or dense) / dense
        return np.array([
            1.0, i / max(1, self.n - 1), self._layer_of[i], self._share[i] * 10.0,
            spent, budget - spent, prev / (self.levels - 1), lam / self._lam_scale,
        ])

    def _mask(self, i: int, prefix: list[int]) -> np.ndarray:
        """Levels that keep the budget reachable (later elements at their lowest)."""
        mask = np.ones(self.levels, dtype=bool)
        if self.max_params is None and self.min_compression is None:
            return mask
        for a, v in enumerate(self._level_values[i]):
            mask[a] = self.feasible(tuple(prefix) + (v,) + self.lowest[i + 1:])
        if not mask.any():
            mask[0] = True
        return mask

    def _rollout(self, lam: float, explore: float) -> Episode:
        """Walk the elements; each action comes from the policy mixed with `explore` uniform."""
        assert self.policy is not None
        prefix: list[int] = []
        prev = self.levels - 1
        feats, masks, actions, logps = [], [], [], []
        for i in range(self.n):
            x = self._features(i, prefix, prev, lam)
            mask = self._mask(i, prefix)
            uniform = mask / mask.sum()
            if explore >= 1.0:
                p = uniform
            else:
                p = self.policy.probs(x[None, :], mask[None, :])[0][0]
                p = (1.0 - explore) * p + explore * uniform
            a = int(self.rng.choice(self.levels, p=p))
            feats.append(x)
            masks.append(mask)
            actions.append(a)
            logps.append(math.log(max(p[a], 1e-12)))
            prefix.append(self._level_values[i][a])
            prev = a
        ranks = self.canon(tuple(prefix))
        if not self.feasible(ranks):  # only when every level was masked: lower to fit
            ranks = sampling.repair(self, ranks) or self.lowest
        return Episode(lam, np.array(feats), np.array(masks), np.array(actions), np.array(logps), ranks)

    def reward(self, accuracy: float, params: int, lam: float) -> float:
        dense = float(self.space.dense_params)
        if self.reward_kind == "error_log":
            return -(1.0 - accuracy) * math.log(params)
        return accuracy - lam * math.log(params / dense)

    # -- protocol hooks -----------------------------------------------------------------------
    def _next_batch(self, limit: int) -> Iterable[Proposal]:
        if self._batch:
            self._learn()
        explore = 1.0 if self.batch < self.warmup else 0.0
        for _ in range(6):  # a batch made only of measured configurations costs nothing
            batch = []
            for _k in range(self.episodes):
                lam = self.lambdas[self.episode_count % len(self.lambdas)]
                self.episode_count += 1
                batch.append(self._rollout(lam, explore))
            self._batch = batch
            new = [ep.ranks for ep in batch if ep.ranks not in self.known]
            new = list(dict.fromkeys(r for r in new if self.is_new(r)))[:limit]
            if new:
                info = {"rl_batch": self.batch}
                return [Proposal(r, info) for r in new]
            if any(ep.ranks not in self.known for ep in batch):
                return []  # in flight elsewhere
            self._learn()
            explore = min(1.0, max(0.1, 2.0 * explore))  # the policy repeats itself: explore more
        cand = sampling.new_feasible(self, self.rng)
        if cand is None:
            self.mark_exhausted()
            return []
        self._batch = []
        return [Proposal(cand, {"rl_batch": self.batch, "fallback": True})]

    def _learn(self) -> None:
        """One policy update from the finished batch (episodes without a result are skipped)."""
        assert self.policy is not None
        done = [ep for ep in self._batch if ep.ranks in self.known]
        self._batch = []
        self.batch += 1
        if not done:
            return
        for ep in done:
            ep.reward = self.reward(self.known[ep.ranks].accuracy, self.params(ep.ranks), ep.lam)
        adv = []
        for ep in done:
            base = self._baseline.get(ep.lam)
            adv.append(ep.reward - (base if base is not None else ep.reward))
        by_lam: dict[float, list[float]] = {}
        for ep in done:
            by_lam.setdefault(ep.lam, []).append(ep.reward)
        for lam, rewards in by_lam.items():
            mean = float(np.mean(rewards))
            old = self._baseline.get(lam)
            self._baseline[lam] = mean if old is None else (
                self.baseline_decay * old + (1 - self.baseline_decay) * mean)
        adv_arr = np.array(adv)
        scale = float(adv_arr.std())
        if scale > 0:
            adv_arr = adv_arr / scale
        X = np.concatenate([ep.features for ep in done])
        M = np.concatenate([ep.masks for ep in done])
        A = np.concatenate([ep.actions for ep in done])
        W = np.repeat(adv_arr, self.n) / len(done)
        if self.algorithm == "reinforce":
            self.policy.ascend(self.policy.grad_log_prob(X, M, A, W, self.entropy / len(done)))
            return
        old_logp = np.concatenate([ep.log_probs for ep in done])
        for _ in range(self.ppo_epochs):
            p, _h = self.policy.probs(X, M)
            ratio = np.exp(np.log(np.maximum(p[np.arange(len(A)), A], 1e-12)) - old_logp)
            clipped = ((W > 0) & (ratio > 1 + self.ppo_clip)) | ((W < 0) & (ratio < 1 - self.ppo_clip))
            weights = np.where(clipped, 0.0, W * ratio)
            self.policy.ascend(self.policy.grad_log_prob(X, M, A, weights, self.entropy / len(done)))
