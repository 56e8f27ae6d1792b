"""Prompted heatmaps: where in the image a spoken word or a sound lands (paper sections 4.2-4.3).

For a paired image and audio clip the model's paired similarity volume ``s[k, t, h, w]`` (head k,
audio token t, image token (h, w); paper eq. 1) is reduced over time with the prompt's token
weights: the word span +-0.2 s for speech prompts, the whole valid clip for sound prompts.
The heatmap used for the measurements takes, per token, the max over heads (paper: "we max-pool
the head dimension"), then the weighted time average; the per-head maps feed the pictures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from denseav.similarity import paired_sim_volume

WORD_PAD_SECONDS = 0.2


def prompt_sample_mask(
    spans: Sequence[tuple[float, float] | None],
    valid_samples: Sequence[int],
    num_samples: int,
    sample_rate: int,
    pad_seconds: float = WORD_PAD_SECONDS,
) -> torch.Tensor:
    """Sample-level weights of the prompt in every clip of a batch.

    Args:
        spans: per clip, the word's ``(start, end)`` in seconds, or None for the whole clip.
        valid_samples: per clip, the number of real (non-padded) samples.
        num_samples: the batch's padded length ``N``.
    Returns:
        ``(B, N)`` float in ``{0, 1}``: 1 inside ``[start - pad, end + pad]`` and the valid audio.
    """
    if len(spans) != len(valid_samples):
        raise ValueError(f"{len(spans)} spans for {len(valid_samples)} clips")
    mask = torch.zeros(len(spans), num_samples)
    for i, (span, valid) in enumerate(zip(spans, valid_samples)):
        lo, hi = 0, valid
        if span is not None:
            start, end = span
            if end < start:
                raise ValueError(f"clip {i}: word span ends before it starts: {span}")
            lo = max(0, int(np.floor((start - pad_seconds) * sample_rate)))
            hi = min(valid, int(np.ceil((end + pad_seconds) * sample_rate)))
            if hi <= lo:
                raise ValueError(
                    f"clip {i}: word span {span} lies outside the {valid / sample_rate:.2f} s of audio"
                )
        mask[i, lo:hi] = 1.0
    return mask


def weighted_time_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Average over audio tokens: ``(B, ..., T, h, w)`` with ``(B, T)`` weights -> ``(B, ..., h, w)``."""
    w = weights.to(values.dtype)
    total = w.sum(-1)
    if bool((total <= 0).any()):
        raise ValueError(
            "a prompt covers no audio token; its span is shorter than the token spacing"
        )
    shape = (w.shape[0],) + (1,) * (values.dim() - 4) + (w.shape[1], 1, 1)
    return (values * w.reshape(shape)).sum(-3) / total.reshape((-1,) + (1,) * (values.dim() - 2))


def prompt_token_weights(
    model: torch.nn.Module, prompt_mask: torch.Tensor, audio_mask: torch.Tensor
) -> torch.Tensor:
    """``(B, N)`` sample-level prompt mask -> ``(B, T)`` weights in ``{0, 1}``: every audio token
    whose receptive field touches the prompt and the valid audio counts fully (the published
    evaluation's floor/ceil of the word span in tokens)."""
    return ((model.token_mask(prompt_mask) > 0) & (audio_mask > 0)).float()


@dataclass
class PromptHeatmaps:
    """Heatmaps at the image-feature resolution.

    Attributes:
        combined: ``(B, h, w)`` max over heads per token, then the prompt's time average.
        per_head: ``(B, K, h, w)`` each head's time average over the prompt.
        volume: ``(B, K, T, h, w)`` the paired similarity volume the maps come from.
        token_weights: ``(B, T)`` the prompt's weights over audio tokens.
    """

    combined: torch.Tensor
    per_head: torch.Tensor
    volume: torch.Tensor
    token_weights: torch.Tensor


@torch.no_grad()
def prompted_heatmaps(
    model: torch.nn.Module,
    images: torch.Tensor,
    waveforms: torch.Tensor,
    sample_mask: torch.Tensor,
    prompt_mask: torch.Tensor,
) -> PromptHeatmaps:
    """Run the model on paired images and audio and reduce the similarity volume over the prompt.

    Args:
        model: a ``DenseAV`` in eval mode.
        images: ``(B, 3, H, W)`` in ``[0, 1]``. waveforms: ``(B, N)`` 16 kHz.
        sample_mask: ``(B, N)`` 1 on valid audio. prompt_mask: ``(B, N)`` 1 on the prompt
            (see :func:`prompt_sample_mask`).
    """
    image = model.encode_image(images)
    audio = model.encode_audio(waveforms, sample_mask=sample_mask)
    volume = paired_sim_volume(audio.features, image.features, model.config.heads).float()
    weights = prompt_token_weights(model, prompt_mask, audio.mask)
    return PromptHeatmaps(
        combined=weighted_time_mean(volume.amax(dim=1), weights),
        per_head=weighted_time_mean(volume, weights),
        volume=volume,
        token_weights=weights,
    )


def upsample(heatmaps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, h, w)`` or ``(B, K, h, w)`` maps to the label resolution."""
    squeeze = heatmaps.dim() == 3
    x = heatmaps.unsqueeze(1) if squeeze else heatmaps
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return out.squeeze(1) if squeeze else out


def head_clip_scores(volume: torch.Tensor, token_weights: torch.Tensor) -> torch.Tensor:
    """Per-head clip similarity ``S(a, v)_k`` (paper sec. 4.5: eq. 2 without the max over heads).

    ``S_k = sum_t m_t max_{h,w} s[k, t, h, w] / sum_t m_t``.

    Args:
        volume: ``(B, K, T, h, w)``. token_weights: ``(B, T)``.
    Returns:
        ``(B, K)``.
    """
    best = volume.flatten(-2).amax(-1)  # (B, K, T)
    w = token_weights.to(best.dtype).unsqueeze(1)
    return (best * w).sum(-1) / w.sum(-1).clamp_min(1e-6)
