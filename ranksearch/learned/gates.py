"""Per-slice rank gates: a hard-concrete l0 gate and an automatic-rank-determination prior.

Both hold one vector of parameters per rank element (one entry per slice) and answer the same
questions: what multiplies each slice in a forward pass, how likely each slice is to be kept
(the soft count the parameter budget is computed from), which slices are kept at the end, and
in which order to keep them when a rank has to be rounded to an allowed value.

Trainable values are stored divided by `speed` (value = speed * stored): with Adam every stored
entry moves about `lr` per step whatever its gradient's size, so `speed` sets how many units of
log-alpha (or log-variance) a gate can travel per step, independently of the weights' learning
rate. Gates must be able to close within one training run of a few hundred steps.
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
    """

    def __init__(self, size: int, *, init_log_alpha: float = 3.0, beta: float = 2.0 / 3.0,
                 gamma: float = -0.1, zeta: float = 1.1, speed: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"HardConcreteGate: size must be >= 1, got {size}")
        if not (gamma < 0 and zeta > 1 and beta > 0):
            raise ValueError(f"HardConcreteGate: need gamma < 0 < 1 < zeta and beta > 0, "
                             f"got gamma={gamma}, zeta={zeta}, beta={beta}")
        if speed <= 0:
            raise ValueError(f"HardConcreteGate: speed must be > 0, got {speed}")
        self.beta, self.gamma, self.zeta, self.speed = float(beta), float(gamma), float(zeta), float(speed)
        self.raw = nn.Parameter(torch.full((size,), float(init_log_alpha) / self.speed))

    @property
    def log_alpha(self) -> Tensor:
        return self.raw * self.speed

    def sample(self, generator: torch.Generator) -> Tensor:
        """One stochastic gate value per slice (training)."""
        u = torch.rand(self.raw.shape, generator=generator, dtype=torch.float64)
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

    def kept(self) -> Tensor:
        """Slices more likely open than closed (keep_prob >= 1/2): the rule the expected count
        E[R] = sum keep_prob agrees with. Every kept slice has a non-zero test-time gate."""
        return self.keep_prob().detach() >= 0.5

    def score(self) -> Tensor:
        """Larger = keep first."""
        return self.log_alpha.detach()


class ARDPrior(nn.Module):
    """Automatic rank determination: slice i of an element has prior N(0, v_i) on every entry
    it touches, v_i learned (MAP, log-uniform hyperprior), as in Bayesian tensorized nets
    (Hawkins, Liu & Zhang 2022). Unneeded slices see v_i and their weights collapse together;
    a slice is kept while v_i / max_j v_j >= `threshold`. It gates nothing in the forward pass.

    `keep_prob` is a soft version of that rule (a sigmoid in log(v_i / max v) around
    log(threshold) with width `temperature`), used for the expected parameter count.
    """

    def __init__(self, size: int, *, threshold: float = 1e-2, temperature: float = 1.0,
                 speed: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"ARDPrior: size must be >= 1, got {size}")
        if not 0 < threshold < 1:
            raise ValueError(f"ARDPrior: threshold must be in (0, 1), got {threshold}")
        if temperature <= 0 or speed <= 0:
            raise ValueError(f"ARDPrior: temperature and speed must be > 0, got {temperature}, {speed}")
        self.threshold, self.temperature, self.speed = float(threshold), float(temperature), float(speed)
        self.raw = nn.Parameter(torch.zeros(size))

    @property
    def log_var(self) -> Tensor:
        return self.raw * self.speed

    def init_from(self, sq_sum: Tensor, count: int) -> None:
        """Start every variance at its slice's mean square (the prior's MAP for those weights)."""
        with torch.no_grad():
            self.raw.copy_(torch.log(sq_sum.detach() / count + 1e-12) / self.speed)

    def value(self, *, training: bool, generator: torch.Generator) -> Tensor | None:
        return None

    def _relative(self) -> Tensor:
        lv = self.log_var
        return lv - lv.detach().max()

    def keep_prob(self) -> Tensor:
        return torch.sigmoid((self._relative() - math.log(self.threshold)) / self.temperature)

    def kept(self) -> Tensor:
        return self._relative().detach() >= math.log(self.threshold)

    def score(self) -> Tensor:
        return self.log_var.detach()

    def penalty(self, sq_sum: Tensor, count: int) -> Tensor:
        """-log prior of the slices (Gaussian with variance v_i, log-uniform on v_i), up to a constant.

        `sq_sum[i]` is the sum of squares of every entry slice i touches; `count` entries per slice.
        """
        lv = self.log_var
        return (0.5 * sq_sum * torch.exp(-lv) + (0.5 * count + 1.0) * lv).sum()


def make_gate(kind: str, size: int, **options: float) -> HardConcreteGate | ARDPrior:
    """A gate of `kind` ('l0' or 'ard') over `size` slices; unknown names list the valid ones."""
    if kind == "l0":
        return HardConcreteGate(size, **options)
    if kind == "ard":
        return ARDPrior(size, **options)
    raise ValueError(f"unknown gate kind {kind!r}; use one of {KINDS}")
