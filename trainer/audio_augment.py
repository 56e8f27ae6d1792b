"""Audio augmentations for small corpora: speed perturbation and additive noise.

Not part of DenseAV's recipe (the paper trains on millions of clips and augments only images),
so both are off by default. On a corpus small enough to memorise (the toy world's 1000 captions
and 200 sound clips), a fresh speed and noise level for every presentation of a clip stops the
audio encoder from recognising the clip itself, leaving the words and sounds in it as the cue.
Every draw comes from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.augment import uniform


@dataclass
class AudioAugment:
    """Settings of :func:`augment_audio`; 0 turns a part off.

    Attributes:
        speed: playback-rate factor drawn uniformly from ``[1 - speed, 1 + speed]`` (changes
            duration and pitch together, like tape speed).
        noise: white noise with a standard deviation drawn uniformly from ``[0, noise]`` times the
            clip's own (valid part).
    """

    speed: float = 0.0
    noise: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.speed > 0 or self.noise > 0


def change_speed(clip: np.ndarray, factor: float) -> np.ndarray:
    """Resample ``(n,)`` samples to play ``factor`` times faster: ``round(n / factor)`` samples."""
    n = clip.shape[0]
    out_len = max(1, round(n / factor))
    positions = np.arange(out_len, dtype=np.float64) * factor
    return np.interp(positions, np.arange(n), clip).astype(np.float32)


def augment_audio(
    audio: np.ndarray, valid: int, cfg: AudioAugment, g: torch.Generator
) -> tuple[np.ndarray, int]:
    """A training view of a clip whose first ``valid`` samples are real audio.

    Args:
        audio: ``(N,)`` float32 (padding after ``valid`` is dropped).
        valid: real samples at the start of ``audio``.
    Returns:
        the augmented real samples ``(M,)`` (``M = round(valid / factor)``; the collate step pads
        or cuts every clip to the training length) and ``M``.
    """
    clip = np.asarray(audio[:valid], dtype=np.float32)
    if cfg.speed > 0 and valid > 1:
        clip = change_speed(clip, uniform(1 - cfg.speed, 1 + cfg.speed, g))
    if cfg.noise > 0 and clip.size > 1:
        level = uniform(0.0, cfg.noise, g) * float(clip.std())
        noise = torch.randn(clip.shape[0], generator=g, dtype=torch.float32).numpy()
        clip = clip + level * noise
    return clip, int(clip.shape[0])
