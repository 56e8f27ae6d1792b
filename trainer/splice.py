"""Negative audio splicing for the splice regulariser (paper supplement; DESIGN.md section 4).

Into every clip of a batch a 1-4 s piece of a clip from *outside* the batch is mixed at a random
offset inside the clip's own audio, faded in and out with a raised-cosine crossfade of
``max(len / 4, 0.5 s)`` capped at ``len / 2`` (as the published code does; a clip no longer than
the piece gets none). The soft negative mask ``m[t]`` follows the crossfade: 1 where only the
foreign piece plays, 0 where only the clip's own audio plays, in between while both are heard.
Padded silence at the end of short clips holds none of the clip's own sound, so it counts as
negative too. Optionally a piece is cut to a fraction of the clip's own audio
(``max_fraction``): the published 4 s in 10 s is 0.4, while in a 3 s caption a 1-4 s piece would
replace most of the words.

Why from outside the batch: a piece of a clip *in* the batch is the audio of one of the batch's
contrastive negatives, so InfoNCE (whose time average includes the piece) learns to reject that
sound in one row while it learns to match it in another. On the toy world, pieces from the same
batch cost about 0.27 held-out speech-prompted mAP and 0.2 sound mAP
(docs/demo-experiments.md). The published code draws the piece from a random clip of the
dataset; the trainer passes the previous micro-batch of the same process (:class:`DonorClips`),
which is as random and is saved in checkpoints, so a resumed run splices exactly as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class SplicedAudio:
    """Result of :func:`splice_negatives`; every tensor is ``(B, N)``.

    Attributes:
        audio: the waveforms with the negative pieces mixed in.
        sample_mask: 1 where the encoder should see audio (the clip's valid samples and the
            spliced piece), 0 on the remaining padding.
        splice_mask: the crossfade weight of the foreign piece (0 outside it).
        negative_mask: everything that is not the clip's own sound, ``1 - valid * (1 - fade)``:
            the spliced piece and the padded silence (the paper's ``m_b``).
        donors: ``(B,)`` index of the donor clip each piece came from (-1: nothing spliced).
    """

    audio: torch.Tensor
    sample_mask: torch.Tensor
    splice_mask: torch.Tensor
    negative_mask: torch.Tensor
    donors: torch.Tensor


@dataclass
class DonorClips:
    """Clips the negative pieces are cut from: ``audio (D, N)``, zero after ``valid_samples (D,)``."""

    audio: torch.Tensor
    valid_samples: torch.Tensor

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"audio": self.audio.clone(), "valid_samples": self.valid_samples.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> DonorClips:
        return cls(audio=state["audio"], valid_samples=state["valid_samples"])


def crossfade_samples(piece_samples: int, sample_rate: int) -> int:
    """Crossfade length of a piece: ``max(len / 4, 0.5 s)``, capped at ``len / 2`` (samples)."""
    return int(min(max(piece_samples / 4, 0.5 * sample_rate), piece_samples / 2))


def raised_cosine_window(length: int, fade: int) -> torch.Tensor:
    """``(length,)`` weights rising ``0 -> 1`` over ``fade`` samples, flat, then falling back.

    The ramp is ``0.5 - 0.5 cos(pi x)`` sampled at sample centres ``x = (i + 0.5) / fade``, so it
    is symmetric, strictly inside ``(0, 1)`` on the ramps and exactly 1 on the flat part.
    """
    if length <= 0:
        return torch.zeros(0)
    fade = max(0, min(fade, length // 2))
    window = torch.ones(length, dtype=torch.float64)
    if fade:
        x = (torch.arange(fade, dtype=torch.float64) + 0.5) / fade
        ramp = 0.5 - 0.5 * torch.cos(math.pi * x)
        window[:fade] = ramp
        window[length - fade :] = ramp.flip(0)
    return window.float()


@dataclass(frozen=True)
class Splice:
    """One negative piece: ``length`` samples of clip ``donor`` from ``src`` mixed in at ``dst``."""

    donor: int
    src: int
    dst: int
    length: int


def _uniform_int(low: int, high: int, generator: torch.Generator) -> int:
    """An integer in ``[low, high]`` (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def draw_splices(
    valid_samples: torch.Tensor,
    donor_valid_samples: torch.Tensor,
    generator: torch.Generator,
    sample_rate: int = 16000,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
    max_fraction: float | None = None,
    probability: float = 1.0,
) -> list[Splice | None]:
    """Choose, for every clip, a donor clip and a piece of its valid audio to mix in.

    Args:
        valid_samples: ``(B,)`` real (non-padded) samples per clip.
        donor_valid_samples: ``(D,)`` real samples per donor clip.
        generator: the source of every random choice.
        max_fraction: if set, a piece is at most this fraction of the clip's own audio (the
            drawn length is cut down to it).
        probability: chance that a clip gets a piece at all. At 1 no coin is drawn, so the
            choices are those of a run without this setting.
    Returns:
        One :class:`Splice` per clip, placed inside the clip's own audio; None when there are no
        donors, the clip's coin said no or the piece would not fit (a clip no longer than the piece).
    """
    if donor_valid_samples.numel() == 0:
        return [None] * len(valid_samples)
    lo = round(min_seconds * sample_rate)
    hi = round(max_seconds * sample_rate)
    out: list[Splice | None] = []
    for own in valid_samples.tolist():
        if probability < 1 and float(torch.rand((), generator=generator)) >= probability:
            out.append(None)
            continue
        donor = _uniform_int(0, donor_valid_samples.numel() - 1, generator)
        donor_len = int(donor_valid_samples[donor])
        length = min(_uniform_int(lo, hi, generator), donor_len)
        if max_fraction is not None:
            length = min(length, int(max_fraction * own))
        if length < 2 or length >= own:
            out.append(None)
            continue
        src = _uniform_int(0, donor_len - length, generator)
        dst = _uniform_int(0, own - length, generator)
        out.append(Splice(donor, src, dst, length))
    return out


def apply_splices(
    audio: torch.Tensor,
    valid_samples: torch.Tensor,
    splices: list[Splice | None],
    donor_audio: torch.Tensor | None,
    sample_rate: int = 16000,
) -> SplicedAudio:
    """Mix the pieces in with raised-cosine crossfades and build the masks.

    Args:
        audio: ``(B, N)`` waveforms, zero after ``valid_samples``.
        valid_samples: ``(B,)``.
        splices: one entry per clip (see :func:`draw_splices`).
        donor_audio: ``(D, N')`` the clips that ``Splice.donor`` indexes (None: no splices).
    """
    b, n = audio.shape
    valid = (torch.arange(n).unsqueeze(0) < valid_samples.unsqueeze(1)).to(audio.dtype)
    out = audio.clone()
    fade = torch.zeros_like(audio)
    donors = torch.full((b,), -1, dtype=torch.long)
    for i, sp in enumerate(splices):
        if sp is None:
            continue
        if donor_audio is None:
            raise ValueError(f"clip {i} has a splice from donor {sp.donor} but no donor_audio")
        w = raised_cosine_window(sp.length, crossfade_samples(sp.length, sample_rate)).to(
            audio.dtype
        )
        where = slice(sp.dst, sp.dst + sp.length)
        out[i, where] = (
            out[i, where] * (1 - w) + donor_audio[sp.donor, sp.src : sp.src + sp.length] * w
        )
        fade[i, where] = w
        donors[i] = sp.donor
    sample_mask = torch.maximum(valid, (fade > 0).to(audio.dtype))
    return SplicedAudio(out, sample_mask, fade, 1 - valid * (1 - fade), donors)


def splice_negatives(
    audio: torch.Tensor,
    valid_samples: torch.Tensor,
    donors: DonorClips,
    generator: torch.Generator,
    sample_rate: int = 16000,
    min_seconds: float = 1.0,
    max_seconds: float = 4.0,
    max_fraction: float | None = None,
    probability: float = 1.0,
) -> SplicedAudio:
    """Mix into each clip a piece of a donor clip (:func:`draw_splices` + :func:`apply_splices`).

    Args:
        audio: ``(B, N)`` float waveforms, zero-padded after ``valid_samples``.
        valid_samples: ``(B,)`` number of real (non-padded) samples of each clip.
        donors: clips from outside the batch to cut the pieces from.
        generator: the source of every random choice (a fixed seed gives a fixed result).
        sample_rate: samples per second of ``audio``.
        min_seconds, max_seconds: range of the piece length, drawn uniformly.
        max_fraction: cap on the piece length as a fraction of the clip's own audio (None: none).
        probability: chance that a clip gets a piece.
    """
    splices = draw_splices(
        valid_samples,
        donors.valid_samples,
        generator,
        sample_rate,
        min_seconds,
        max_seconds,
        max_fraction,
        probability,
    )
    return apply_splices(audio, valid_samples, splices, donors.audio, sample_rate)
