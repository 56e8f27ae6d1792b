"""Learning-rate schedule: a linear warm-up at the start of each training phase, then constant or
a cosine decay to zero at the last step; and the linear ramp of a loss weight over the first steps.

DenseAV warms the learning rate up twice: when phase 1 (aligners only) starts and again when
phase 2 adds the backbones (DESIGN.md section 4). The factor is a pure function of the step, so
a resumed run gets exactly the learning rate of the run that did not stop.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

DECAYS = ("constant", "cosine")


class PhaseSchedule:
    """``factor(step) = warmup(step) * decay(step)``.

    ``warmup = min(1, (step - phase_start + 1) / warmup_steps)`` with ``phase_start`` 0 in phase 1
    and ``phase2_start`` afterwards (``warmup_steps == 0``: 1). ``decay`` is 1 for ``"constant"``;
    for ``"cosine"`` it falls from 1 at the start of phase 2 to 0 at ``total_steps`` (phase 1 is
    not decayed). A plain object (not a lambda) so ``LambdaLR.state_dict`` saves it.
    """

    def __init__(
        self, warmup_steps: int, phase2_start: int, total_steps: int, decay: str = "constant"
    ) -> None:
        if decay not in DECAYS:
            raise ValueError(f"optim.decay={decay!r}; choose from {DECAYS}")
        self.warmup_steps = warmup_steps
        self.phase2_start = phase2_start
        self.total_steps = total_steps
        self.decay = decay

    def __call__(self, step: int) -> float:
        start = self.phase2_start if step >= self.phase2_start else 0
        warmup = 1.0 if self.warmup_steps <= 0 else min(1.0, (step - start + 1) / self.warmup_steps)
        if self.decay == "constant" or step < self.phase2_start:
            return warmup
        span = max(self.total_steps - self.phase2_start, 1)
        progress = min((step - self.phase2_start) / span, 1.0)
        return warmup * 0.5 * (1.0 + math.cos(math.pi * progress))


def phase_scheduler(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    phase2_start: int,
    total_steps: int,
    decay: str = "constant",
) -> LambdaLR:
    """A ``LambdaLR`` whose ``step()`` is called once per optimizer step."""
    return LambdaLR(optimizer, PhaseSchedule(warmup_steps, phase2_start, total_steps, decay))


def linear_ramp(step: int, start: float, end: float, steps: int) -> float:
    """``start`` at step 0, linearly to ``end`` at ``steps``, and ``end`` from then on."""
    return end + (start - end) * max(0.0, 1.0 - step / steps)
