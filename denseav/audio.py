"""Audio preparation: per-clip normalisation and sample-rate masks turned into token-rate masks.

A token mask is computed by pushing the sample-level mask through an average pool with the same
``(kernel, stride)`` as every convolution between the waveform and the aligner output (HuBERT's
feature encoder, then the aligner's two time convolutions). Pooling without padding gives exactly
the convolutions' output lengths, and a token's value is the (nested) average of the mask over its
receptive field: 1 inside valid audio, 0 inside padding, in between at the borders.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000  # Hz: the rate every DenseAV audio input is at


def normalize_waveform(
    waveform: torch.Tensor, sample_mask: torch.Tensor | None = None, eps: float = 1e-7
) -> torch.Tensor:
    """Zero mean, unit variance per clip over its valid samples; padded samples become 0.

    Args:
        waveform: ``(B, N)``. sample_mask: ``(B, N)``, nonzero where audio is valid; None = all valid.
    Returns:
        ``(B, N)``; a clip without valid samples comes out all zeros.
    """
    if sample_mask is None:
        valid = torch.ones_like(waveform)
    else:
        valid = (sample_mask > 0).to(waveform.dtype)
    count = valid.sum(dim=1, keepdim=True).clamp_min(1.0)
    mean = (waveform * valid).sum(dim=1, keepdim=True) / count
    var = (((waveform - mean) * valid) ** 2).sum(dim=1, keepdim=True) / count
    return (waveform - mean) / torch.sqrt(var + eps) * valid


def conv_output_length(length: int, layers: Sequence[tuple[int, int]]) -> int:
    """Output length of unpadded 1-d convolutions ``[(kernel, stride), ...]`` applied in order."""
    for kernel, stride in layers:
        length = max((length - kernel) // stride + 1, 0)
    return length


def min_input_length(layers: Sequence[tuple[int, int]]) -> int:
    """Fewest samples for which the convolutions ``[(kernel, stride), ...]`` produce one output."""
    length = 1
    for kernel, stride in reversed(layers):
        length = (length - 1) * stride + kernel
    return length


def downsample_mask(mask: torch.Tensor, layers: Sequence[tuple[int, int]]) -> torch.Tensor:
    """``(B, N)`` soft mask -> ``(B, T)`` by average pools with the given ``(kernel, stride)`` chain."""
    out = mask.to(
        torch.get_default_dtype() if not mask.is_floating_point() else mask.dtype
    ).unsqueeze(1)
    for kernel, stride in layers:
        if out.shape[-1] < kernel:
            raise ValueError(
                f"audio of {mask.shape[-1]} samples is too short for a kernel of {kernel}"
            )
        out = F.avg_pool1d(out, kernel_size=kernel, stride=stride)
    return out.squeeze(1)
