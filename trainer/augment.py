"""The paper's image augmentations, drawn from an explicit generator (no global RNG).

One random frame per clip, then RandomResizedCrop, horizontal flip, ColorJitter (brightness,
contrast, saturation, hue in random order) and RandomGrayscale, as in DenseAV's training. The
parameters follow the usual definitions (crop area fraction and log-uniform aspect ratio in
[3/4, 4/3]; jitter factors uniform in ``[1 - s, 1 + s]``, hue shift uniform in ``[-s, s]`` of a
turn). Every draw comes from the ``torch.Generator`` passed in, so a fixed seed gives a fixed
batch whatever else the process does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ImageAugment:
    """Settings of :func:`augment_image` (defaults: the paper's)."""

    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter: float = 0.2
    jitter_p: float = 1.0
    grayscale_p: float = 0.1


def uniform(low: float, high: float, g: torch.Generator) -> float:
    """A float uniform in ``[low, high)`` drawn from ``g`` (float64, so no rounding to ``high``)."""
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(low: int, high: int, g: torch.Generator) -> int:
    """Integer in ``[low, high]`` inclusive."""
    return int(torch.randint(low, high + 1, (), generator=g))


def crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    g: torch.Generator,
) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box ``(top, left, h, w)`` inside a ``height x width`` image.

    Ten tries of (area fraction in ``scale``, log-uniform aspect in ``ratio``); if none fits,
    the largest centred box whose aspect is clamped into ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * uniform(scale[0], scale[1], g)
        aspect = math.exp(uniform(log_lo, log_hi, g))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(0, height - h, g), _randint(0, width - w, g), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _gray(x: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` -> ``(1, H, W)`` luminance."""
    return kornia.color.rgb_to_grayscale(x.unsqueeze(0))[0]


def color_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation and hue changes in a random order. ``x``: ``(3, H, W)`` in [0, 1]."""
    order = torch.randperm(4, generator=g).tolist()
    factors = [uniform(1 - strength, 1 + strength, g) for _ in range(3)]
    hue = uniform(-strength, strength, g)
    for op in order:
        if op == 0:
            x = (x * factors[0]).clamp(0, 1)
        elif op == 1:
            mean = _gray(x).mean()
            x = ((x - mean) * factors[1] + mean).clamp(0, 1)
        elif op == 2:
            gray = _gray(x)
            x = ((x - gray) * factors[2] + gray).clamp(0, 1)
        else:
            x = kornia.enhance.adjust_hue(x.unsqueeze(0), hue * 2 * math.pi)[0].clamp(0, 1)
    return x


def augment_image(frame: np.ndarray, cfg: ImageAugment, g: torch.Generator) -> torch.Tensor:
    """One training view of a frame: ``(H, W, 3) uint8`` -> ``(3, size, size)`` float in [0, 1]."""
    top, left, h, w = crop_box(frame.shape[0], frame.shape[1], cfg.scale, cfg.ratio, g)
    crop = torch.from_numpy(np.ascontiguousarray(frame[top : top + h, left : left + w]))
    x = crop.permute(2, 0, 1).float().div_(255).unsqueeze(0)
    x = F.interpolate(
        x, size=(cfg.size, cfg.size), mode="bilinear", align_corners=False, antialias=True
    )[0].clamp_(0, 1)
    if float(torch.rand((), generator=g)) < cfg.hflip_p:
        x = x.flip(-1)
    if cfg.jitter > 0 and float(torch.rand((), generator=g)) < cfg.jitter_p:
        x = color_jitter(x, cfg.jitter, g)
    if float(torch.rand((), generator=g)) < cfg.grayscale_p:
        x = _gray(x).expand(3, -1, -1).contiguous()
    return x


def pick_frame(frames: list[np.ndarray], g: torch.Generator) -> np.ndarray:
    """One frame of the clip, uniformly at random."""
    return frames[_randint(0, len(frames) - 1, g)]
