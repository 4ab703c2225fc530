"""Models that fail on purpose, for the reliability tests (imported by name inside Ray workers).

The space names them as `faulty:make`; which trials fail follows from the trial's parameter
count, which the closed-form count predicts exactly, so a test knows each trial's fate.
"""

from __future__ import annotations

import os

import torch

from ranksearch.models.zoo import LeNet300


class FaultyLeNet300(LeNet300):
    """LeNet-300-100 whose training forward raises, diverges, or raises once, on demand.

    - mode "mixed": params % 3 == 0 raises, == 1 returns infinite logits (the loss diverges),
      == 2 trains normally;
    - mode "fail_once": raises after `after_steps` training steps unless `marker` exists (and
      creates it), so the retried trial resumes from its last checkpoint and succeeds.
    """

    def __init__(self, input_shape, num_classes, mode: str = "none", marker: str | None = None,
                 after_steps: int = 25) -> None:
        super().__init__(input_shape, num_classes)
        self.mode = mode
        self.marker = marker
        self.after_steps = after_steps
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.training:
            return out
        self.calls += 1
        n = sum(p.numel() for p in self.parameters())
        if self.mode == "mixed":
            if n % 3 == 0:
                raise RuntimeError(f"injected failure ({n} params)")
            if n % 3 == 1:
                return out * float("inf")
        if (self.mode == "fail_once" and self.calls > self.after_steps and self.marker
                and not os.path.exists(self.marker)):
            with open(self.marker, "w"):
                pass
            raise RuntimeError("injected failure, once")
        return out


def make(input_shape, num_classes, **options) -> FaultyLeNet300:
    return FaultyLeNet300(input_shape, num_classes, **options)


def expected_status(params: int) -> tuple[str, str | None]:
    """What mode "mixed" does to a trial with this many parameters: (status, error fragment)."""
    if params % 3 == 0:
        return "failed", "injected failure"
    if params % 3 == 1:
        return "failed", "non-finite"
    return "ok", None
