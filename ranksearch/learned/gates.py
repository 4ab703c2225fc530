"""Per-slice rank gates: a hard-concrete l0 gate and an automatic-rank-determination prior.

Both hold one vector of parameters per rank element (one entry per slice) and answer the same
questions: what multiplies each slice in a forward pass, how likely each slice is to be kept
(the soft count the parameter budget is computed from), which slices are kept at the end, and
in which order to keep them when a rank has to be rounded to an allowed value.

Hard-concrete log-alphas are stored divided by `speed` (value = speed * stored), a knob for how
far an optimizer step moves them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

KINDS = ("l0", "ard")


class HardConcreteGate(nn.Module):
    """Louizos, Welling & Kingma (2018) hard-concrete gate on each of `size` slices.

    Train: z = clamp(sigmoid((log u - log(1-u) + log_alpha) / beta) * (zeta - gamma) + gamma, 0, 1)
    with u ~ U(0, 1); test: z = clamp(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1), which is
    exactly 1 for log_alpha >= log((1 - gamma) / (zeta - 1)) and exactly 0 for
    log_alpha <= -log((zeta - 0) / -gamma) (+-log 11 with the defaults).
    P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)) is the expected-l0 term.

    `ordered` (the default) writes log_alpha_i = offset + raw_i - slope * i with one learned
    offset per element: the slices of a bond are interchangeable, so free per-slice gates under a
    shared penalty move together and end half-open all alike (each off most of the time, none
    usable); ordered gates close from the last slice down, the element learns how many slices it
    needs (the offset gathers the data gradient of all its slices), and raw_i can still reorder.
    Ordered gates also share one noise draw per step (each slice's marginal is still its own
    hard-concrete law): the net sees "the first k slices open" configurations instead of random
    holes in every bond of every core, which starved the training signal, and the kept count
    has the closed-form law P(R >= j) = keep_prob of the j-th most open slice (`count_law`).
    """

    def __init__(self, size: int, *, init_log_alpha: float = 3.0, beta: float = 2.0 / 3.0,
                 gamma: float = -0.1, zeta: float = 1.1, speed: float = 1.0, ordered: bool = True,
                 slope: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"HardConcreteGate: size must be >= 1, got {size}")
        if not (gamma < 0 and zeta > 1 and beta > 0):
            raise ValueError(f"HardConcreteGate: need gamma < 0 < 1 < zeta and beta > 0, "
                             f"got gamma={gamma}, zeta={zeta}, beta={beta}")
        if speed <= 0:
            raise ValueError(f"HardConcreteGate: speed must be > 0, got {speed}")
        if slope < 0:
            raise ValueError(f"HardConcreteGate: slope must be >= 0, got {slope}")
        self.beta, self.gamma, self.zeta, self.speed = float(beta), float(gamma), float(zeta), float(speed)
        self.ordered, self.slope = bool(ordered), float(slope) if ordered else 0.0
        self.register_buffer("ramp", torch.arange(size, dtype=torch.float32) * self.slope, persistent=False)
        top = float(init_log_alpha) + self.slope * (size - 1)  # the last slice starts at init_log_alpha
        self.offset = nn.Parameter(torch.tensor(top / self.speed)) if self.ordered else None
        self.raw = nn.Parameter(torch.full((size,), 0.0 if self.ordered else float(init_log_alpha) / self.speed))

    @property
    def log_alpha(self) -> Tensor:
        la = self.raw * self.speed - self.ramp
        return la + self.offset * self.speed if self.offset is not None else la

    def set_log_alpha(self, values: Tensor) -> None:
        """Put the gates at these log-alphas (tests, restarts)."""
        with torch.no_grad():
            if self.offset is not None:
                self.offset.zero_()
            self.raw.copy_((values.to(self.raw) + self.ramp) / self.speed)

    def sample(self, generator: torch.Generator) -> Tensor:
        """One stochastic gate value per slice (training)."""
        shape = (1,) if self.ordered else self.raw.shape  # ordered: one draw shared by the slices
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        u = u.clamp(1e-6, 1 - 1e-6).to(self.raw.dtype).to(self.raw.device)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.beta)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def deterministic(self) -> Tensor:
        """Test-time gate: exactly 0 or 1 for log_alpha far enough from 0, else in between."""
        return (torch.sigmoid(self.log_alpha) * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def value(self, *, training: bool, generator: torch.Generator) -> Tensor:
        return self.sample(generator) if training else self.deterministic()

    def keep_prob(self) -> Tensor:
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))

    def count_law(self, probs: Tensor | None = None) -> Tensor:
        """P(R = k), k = 0..size, R the number of non-zero gates (differentiable).

        Independent gates: Poisson-binomial. Shared noise: slice i is non-zero iff the common
        logistic draw exceeds a threshold decreasing in its keep probability, so the non-zero
        slices are always the most open ones and P(R >= j) is the j-th largest keep probability.
        """
        p = self.keep_prob() if probs is None else probs
        if not self.ordered:
            return poisson_binomial(p)
        tail = torch.sort(p, descending=True).values  # P(R >= j), j = 1..size
        one, zero = torch.ones(1, dtype=p.dtype, device=p.device), torch.zeros(1, dtype=p.dtype, device=p.device)
        at_least = torch.cat([one, tail, zero])
        return at_least[:-1] - at_least[1:]

    def kept(self) -> Tensor:
        """Slices more likely open than closed (keep_prob >= 1/2): the rule the expected count
        E[R] = sum keep_prob agrees with. Every kept slice has a non-zero test-time gate."""
        return self.keep_prob().detach() >= 0.5

    def score(self) -> Tensor:
        """Larger = keep first."""
        return self.log_alpha.detach()


class ARDPrior(nn.Module):
    """Automatic rank determination: slice i of an element has a prior N(0, v_i) on every entry
    it touches (both factors of a bond, every position the element sets), as in Bayesian
    tensorized nets (Hawkins, Liu & Zhang 2022). v_i is its MAP value given the weights under a
    log-uniform hyperprior, v_i = ||W_i||^2 / (n + 2), recomputed from the weights each time
    (`observe`), never trained on its own: trained by gradient, the variances ran ahead of the
    weights and crushed every slice. The negative log prior then reduces to a group-log penalty
    (n/2 + 1) * log ||W_i||^2 that drives unneeded slices to zero together. A slice is kept while
    v_i / max_j v_j >= `threshold`; it gates nothing in the forward pass.

    `keep_prob` is a soft version of that rule (a sigmoid in log(v_i / max v) around
    log(threshold) with width `temperature`), differentiable in the weights: the parameter budget
    acts on the slices' relative sizes.
    """

    def __init__(self, size: int, *, threshold: float = 1e-2, temperature: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"ARDPrior: size must be >= 1, got {size}")
        if not 0 < threshold < 1:
            raise ValueError(f"ARDPrior: threshold must be in (0, 1), got {threshold}")
        if temperature <= 0:
            raise ValueError(f"ARDPrior: temperature must be > 0, got {temperature}")
        self.threshold, self.temperature = float(threshold), float(temperature)
        self.size = size
        self._log_var: Tensor = torch.zeros(size)
        self._count = 1

    @property
    def log_var(self) -> Tensor:
        return self._log_var

    def observe(self, sq_sum: Tensor, count: int) -> None:
        """Set the variances to their MAP given the slices' sums of squares (keeps the graph)."""
        self._log_var = torch.log(sq_sum / (count + 2) + 1e-30)
        self._count = count

    def value(self, *, training: bool, generator: torch.Generator) -> Tensor | None:
        return None

    def _relative(self) -> Tensor:
        lv = self._log_var
        return lv - lv.detach().max()

    def keep_prob(self) -> Tensor:
        return torch.sigmoid((self._relative() - math.log(self.threshold)) / self.temperature)

    def kept(self) -> Tensor:
        return self._relative().detach() >= math.log(self.threshold)

    def count_law(self, probs: Tensor | None = None) -> Tensor:
        """P(R = k) for independent soft keeps (Poisson-binomial)."""
        return poisson_binomial(self.keep_prob() if probs is None else probs)

    def score(self) -> Tensor:
        return self._log_var.detach()

    def penalty(self) -> Tensor:
        """-log prior of the slices at the MAP variances, up to a constant."""
        return (0.5 * self._count + 1.0) * self._log_var.sum()


def poisson_binomial(p: Tensor) -> Tensor:
    """P(sum of independent Bernoulli(p_i) = k) for k = 0..len(p), differentiable in p."""
    dist = torch.ones(1, dtype=p.dtype, device=p.device)
    zero = torch.zeros(1, dtype=p.dtype, device=p.device)
    for pi in p:
        dist = torch.cat([dist * (1 - pi), zero]) + torch.cat([zero, dist * pi])
    return dist


def make_gate(kind: str, size: int, **options: float) -> HardConcreteGate | ARDPrior:
    """A gate of `kind` ('l0' or 'ard') over `size` slices; unknown names list the valid ones."""
    if kind == "l0":
        return HardConcreteGate(size, **options)
    if kind == "ard":
        return ARDPrior(size, **options)
    raise ValueError(f"unknown gate kind {kind!r}; use one of {KINDS}")
