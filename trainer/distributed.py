"""Cross-process helpers: gathering features with gradients, and agreeing on when streams end.

Every process computes the InfoNCE loss over the *global* batch (negatives from all processes,
as the paper's 80 over 8 GPUs), so features are all-gathered before the loss. The backward pass
sums the gradient of the gathered tensor over processes and hands each process the slice of
its own samples: with the identical global loss on every rank and DDP averaging parameter
gradients, the update equals the gradient of the global loss exactly. Batches may differ in
size between processes (a failed sample is dropped, never replaced), so tensors are padded to
the largest batch for the collective and trimmed afterwards.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_sizes(n: int, device: torch.device) -> list[int]:
    size = torch.tensor([n], device=device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s) for s in sizes]


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    top = max(sizes)
    padded = x.new_zeros((top, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        sizes = _all_sizes(x.shape[0], x.device)
        rank = dist.get_rank()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (``(B_r, ...)``, sizes may differ) from every process in rank order.

    Returns ``(sum_r B_r, ...)``; the gradient reaching this process's slice is the sum over
    processes of the gradients of their losses. One process: ``x`` itself.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (masks, ids)."""
    if not is_distributed():
        return x
    with torch.no_grad():
        return _gather_padded(x, _all_sizes(x.shape[0], x.device))


def local_offset(n: int, device: torch.device) -> int:
    """Row of this process's first sample in the gathered batch (rank order)."""
    if not is_distributed():
        return 0
    return sum(_all_sizes(n, device)[: dist.get_rank()])
