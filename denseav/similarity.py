"""Similarity operators between dense audio and image features (DESIGN.md section 3.2).

Features: audio ``(B, C, T)``, image ``(B, C, H, W)``. ``C`` is split into ``heads`` contiguous
blocks of ``D = C // heads`` channels; head ``k`` owns channels ``[k * D, (k + 1) * D)``.
"""

from __future__ import annotations

import torch


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, C, ...) -> (B, heads, C // heads, ...)``."""
    b, c = x.shape[:2]
    if c % heads:
        raise ValueError(f"feature dim {c} is not divisible by heads={heads}")
    return x.reshape(b, heads, c // heads, *x.shape[2:])


def sim_volume(audio: torch.Tensor, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Raw inner products of every audio clip with every image.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``.
    Returns:
        ``(Ba, Bv, heads, T, H, W)``.
    """
    return torch.einsum("akct,bkchw->abkthw", _split_heads(audio, heads), _split_heads(image, heads))


def paired_sim_volume(audio: torch.Tensor, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Raw inner products of matching pairs only: ``(B, C, T), (B, C, H, W) -> (B, heads, T, H, W)``."""
    return torch.einsum("bkct,bkchw->bkthw", _split_heads(audio, heads), _split_heads(image, heads))


def aggregate(
    audio: torch.Tensor,
    image: torch.Tensor,
    heads: int,
    audio_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Paper eq. 2 with multi-head max: ``S[i, j] = sum_t m[i,t] max_{k,h,w} s[i,j,k,t,h,w] / sum_t m[i,t]``.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``. audio_mask: ``(Ba, T)`` in ``[0, 1]`` or None.
    Returns:
        ``(Ba, Bv)``.
    """
    ba, _, t = audio.shape
    volume = sim_volume(audio, image, heads)  # reference path; issue 7 makes it memory-bounded
    best = volume.flatten(-2).amax(dim=-1).amax(dim=2)  # (Ba, Bv, T)
    if audio_mask is None:
        audio_mask = audio.new_ones(ba, t)
    mask = audio_mask.to(best.dtype).unsqueeze(1)
    return (best * mask).sum(-1) / mask.sum(-1).clamp_min(eps)
