"""Learning-rate schedule: a linear warm-up at the start of each training phase, then constant.

DenseAV warms the learning rate up twice: when phase 1 (aligners only) starts and again when
phase 2 adds the backbones (DESIGN.md section 4). The factor is a pure function of the step, so
a resumed run gets exactly the learning rate of the run that did not stop.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


class PhaseWarmup:
    """``factor(step) = min(1, (step - phase_start + 1) / warmup_steps)``.

    ``phase_start`` is 0 in phase 1 and ``phase2_start`` afterwards; ``warmup_steps == 0`` gives
    a constant factor of 1. A plain object (not a lambda) so ``LambdaLR.state_dict`` saves it.
    """

    def __init__(self, warmup_steps: int, phase2_start: int) -> None:
        self.warmup_steps = warmup_steps
        self.phase2_start = phase2_start

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        start = self.phase2_start if step >= self.phase2_start else 0
        return min(1.0, (step - start + 1) / self.warmup_steps)


def phase_warmup_scheduler(
    optimizer: torch.optim.Optimizer, warmup_steps: int, phase2_start: int
) -> LambdaLR:
    """A ``LambdaLR`` whose ``step()`` is called once per optimizer step."""
    return LambdaLR(optimizer, PhaseWarmup(warmup_steps, phase2_start))
