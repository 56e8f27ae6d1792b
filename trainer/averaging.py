"""An exponential moving average of the model's weights, the model a run exports when it is on.

From optimizer step ``start`` on (a copy of the weights then), after every step::

    average <- decay * average + (1 - decay) * weights

over every floating-point entry of the model's state (parameters and BatchNorm statistics);
integer buffers (BatchNorm's batch counters) are taken from the model as they are. The average
never feeds back into training: a run with it is the same run, step for step.

Why (docs/demo-experiments.md): on the toy world, averages of weights taken while the learning
rate is still high localise sounds better than any single checkpoint of the run, at a cost in
speech retrieval; the demo's ``segmentation`` preset exports such an average, its default and
long presets do not.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """EMA of ``model``'s floating-point state from step ``start`` on (see the module docstring).

    Args:
        decay: weight of the old average per step, in ``(0, 1)``; ``1 / (1 - decay)`` steps is
            the average's time span (0.999: about the last 1000 steps).
        start: the optimizer step (steps done) at which the average starts as a copy.
    """

    def __init__(self, decay: float, start: int) -> None:
        if not 0.0 < decay < 1.0 or start < 0:
            raise ValueError(f"need 0 < decay < 1 and start >= 0, got decay={decay}, start={start}")
        self.decay = decay
        self.start = start
        self.tensors: dict[str, torch.Tensor] | None = None  # float entries, once started

    @staticmethod
    def _floats(model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (steps done, counted from 1)."""
        if step < self.start:
            return
        current = self._floats(model)
        if self.tensors is None:
            self.tensors = {k: v.clone() for k, v in current.items()}
            return
        names = list(self.tensors)
        torch._foreach_lerp_(
            [self.tensors[k] for k in names], [current[k] for k in names], 1.0 - self.decay
        )

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor] | None:
        """The averaged model state (``model``'s integer buffers as they are), None before start."""
        if self.tensors is None:
            return None
        return {k: self.tensors.get(k, v.detach()) for k, v in model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], model: nn.Module) -> None:
        """Restore from :meth:`state_dict`'s output (e.g. a checkpoint), on ``model``'s devices."""
        current = self._floats(model)
        missing = sorted(set(current) - set(state))
        if missing:
            raise ValueError(f"the averaged weights lack {missing[:5]}")
        self.tensors = {k: state[k].to(v.device, v.dtype).clone() for k, v in current.items()}
