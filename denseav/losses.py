"""DenseAV's training loss: symmetric InfoNCE plus the regularisers of paper sections 3.4 and 16.

``L = L_A->V + L_V->A + w_dis L_Dis + w_splice L_Splice + w_silence L_Silence + w_cal L_Cal
+ w_nonneg L_NonNeg + w_tv L_TV`` (paper eq. 5 and 15; the silence term is the splice term applied
to padded silence, which the paper folds into L_Splice).

Each term is also a plain function on tensors below, so it can be tested and reused alone.
Shapes: paired volume ``s (B, K, T, H, W)`` (``denseav.similarity.paired_sim_volume``), token
masks ``(B, T)``, similarity matrices ``(B, G)``.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from denseav.aggregation import configured_similarity
from denseav.config import DenseAVConfig
from denseav.model import AudioFeatures, ImageFeatures
from denseav.similarity import paired_sim_volume

# Names of the terms DenseAVLoss returns besides the total "loss" (for loggers).
LOSS_TERMS = ("a2v", "v2a", "dis", "splice", "silence", "cal", "nonneg", "tv")


def infonce(logits: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """One direction of paper eq. 3: ``-1/(2B) sum_b log softmax(logits[b])[offset + b]``.

    Args:
        logits: ``(B, G)``: row b is a local query scored against all G candidates of the global
            batch, in which the query's own pair sits at column ``offset + b``.
    """
    targets = torch.arange(logits.shape[0], device=logits.device) + offset
    return F.cross_entropy(logits, targets) / 2


def disentanglement(paired: torch.Tensor) -> torch.Tensor:
    """Paper eq. 4/12: ``mean |s[:, k1] * s[:, k2]|`` averaged over head pairs; 0 for one head."""
    k = paired.shape[1]
    if k < 2:
        return paired.new_zeros(())
    terms = [(paired[:, i] * paired[:, j]).abs().mean() for i, j in combinations(range(k), 2)]
    return torch.stack(terms).mean()


def weighted_square_mean(
    paired: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Paper eq. 9: ``WeightedMean(s^2, m)`` with ``m (B, T)`` broadcast over heads and space.

    ``sum s^2 m / sum m`` over every element of the volume; 0 when all weights are 0.
    """
    b, k, t, h, w = paired.shape
    if weights.shape != (b, t):
        raise ValueError(
            f"mask of shape {tuple(weights.shape)} does not match the audio tokens ({b}, {t})"
        )
    m = weights.to(paired.dtype)
    total = (paired.pow(2).sum(dim=(1, 3, 4)) * m).sum()
    return total / (m.sum() * (k * h * w)).clamp_min(eps)


def calibration(inverse_temperature: torch.Tensor) -> torch.Tensor:
    """Paper eq. 10: ``max(0, log 1 - log gamma)^2``."""
    return torch.clamp(-torch.log(inverse_temperature), min=0).pow(2)


def nonnegativity(
    audio: torch.Tensor,
    image: torch.Tensor,
    heads: int,
    samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Paper eq. 11: ``mean min(s, 0)^2`` over random coordinates ``(b, b', k, t, h, w)``.

    Each sampled similarity is the inner product of the two selected feature vectors (the full
    volume is never formed). Audio rows ``b`` and image rows ``b'`` are drawn independently, so
    negative pairs are included.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``. samples: number of coordinates.
        generator: CPU generator for the coordinates (default: torch's global RNG).
    """
    ba, c, t = audio.shape
    bv, _, h, w = image.shape
    d = c // heads

    def draw(high: int) -> torch.Tensor:
        return torch.randint(high, (samples,), generator=generator).to(audio.device)

    bi, bj, k, ti, hi, wi = draw(ba), draw(bv), draw(heads), draw(t), draw(h), draw(w)
    a = audio.reshape(ba, heads, d, t)[bi, k, :, ti]  # (samples, D)
    v = image.reshape(bv, heads, d, h, w)[bj, k, :, hi, wi]  # (samples, D)
    return torch.clamp((a * v).sum(-1), max=0).pow(2).mean()


def total_variation(paired: torch.Tensor) -> torch.Tensor:
    """Paper eq. 13: ``mean (s[:, :, t+1] - s[:, :, t])^2`` over audio time; 0 for a single token."""
    if paired.shape[2] < 2:
        return paired.new_zeros(())
    return (paired[:, :, 1:] - paired[:, :, :-1]).pow(2).mean()


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _with_local(everyone: torch.Tensor, local: torch.Tensor, offset: int) -> torch.Tensor:
    """``everyone`` with rows ``[offset, offset + len(local))`` replaced by ``local`` (keeps its grad)."""
    end = offset + local.shape[0]
    if offset < 0 or end > everyone.shape[0]:
        raise ValueError(
            f"local rows [{offset}, {end}) do not fit a global batch of {everyone.shape[0]}"
        )
    return torch.cat([everyone[:offset], local, everyone[end:]])


class DenseAVLoss(nn.Module):
    """DenseAV's total loss, returned as named terms.

    Single process: ``loss_fn(out.audio, out.image, out.inverse_temperature, splice_mask)``.

    Several processes (negatives from every process, as the paper trains): pass the gathered global
    batch as ``all_audio``/``all_image`` (``G`` rows, the same order on every process) and the
    position ``offset`` of this process's ``B`` local rows in it. The loss puts the local tensors
    back into rows ``[offset, offset + B)`` (so gradients reach them even when the gather does not
    carry gradients), scores the local audio against all G images (A->V) and the local images
    against all G audio clips (V->A), and computes the paired-volume regularisers on the local
    pairs only. With equal local batch sizes, averaging this loss over processes (what DDP's
    gradient averaging does) gives the global-batch InfoNCE.
    """

    def __init__(self, config: DenseAVConfig) -> None:
        super().__init__()
        self.config = config

    def contrast_mask(
        self, audio_mask: torch.Tensor, splice_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``(B, T)`` token weights of InfoNCE's time average: the clip's valid tokens, without the
        spliced ones when ``config.splice_in_infonce`` is False."""
        if self.config.splice_in_infonce or splice_mask is None:
            return audio_mask
        return audio_mask * (1 - splice_mask.to(audio_mask.dtype))

    def _similarity(self, audio: AudioFeatures, image: ImageFeatures) -> torch.Tensor:
        return configured_similarity(
            self.config,
            audio.features,
            image.features,
            audio.mask,
            audio_cls=audio.cls,
            image_cls=image.cls,
        )

    def forward(
        self,
        audio: AudioFeatures,
        image: ImageFeatures,
        inverse_temperature: torch.Tensor,
        splice_mask: torch.Tensor | None = None,
        *,
        all_audio: AudioFeatures | None = None,
        all_image: ImageFeatures | None = None,
        offset: int = 0,
        generator: torch.Generator | None = None,
        dis_weight: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute every term.

        Args:
            audio: local ``AudioFeatures`` (``features (B, C, T)``, ``mask (B, T)``, ``cls (B, C)``).
            image: local ``ImageFeatures`` (``features (B, C, h, w)``, ``cls (B, C)``).
            inverse_temperature: clamped gamma, 0-d (``DenseAVOutput.inverse_temperature``).
            splice_mask: ``(B, T)`` soft token-rate mask of spliced negative audio
                (``model.token_mask(sample_level_splice_mask)``); None = no splice.
            all_audio / all_image: the global batch (``G`` rows), or None for a single process;
                ``all_audio.mask`` holds every row's :meth:`contrast_mask`.
            offset: index of the first local row in the global batch.
            generator: CPU random source of the NonNeg coordinates (default: torch's global RNG).
            dis_weight: the disentanglement term's weight this step (default: ``config.dis_weight``;
                the trainer's ``optim.dis_weight_start`` schedules it).
        Returns:
            ``{"loss", "a2v", "v2a", "dis", "splice", "silence", "cal", "nonneg", "tv"}``, 0-d tensors.
        """
        c = self.config
        contrast = AudioFeatures(
            audio.features, self.contrast_mask(audio.mask, splice_mask), audio.cls
        )
        if all_audio is None:
            all_audio, offset_a = contrast, 0
        else:
            all_audio = AudioFeatures(
                features=_with_local(all_audio.features, audio.features, offset),
                mask=_with_local(all_audio.mask, contrast.mask, offset),
                cls=_with_local(all_audio.cls, audio.cls, offset),
            )
            offset_a = offset
        if all_image is None:
            all_image, offset_v = image, 0
        else:
            all_image = ImageFeatures(
                features=_with_local(all_image.features, image.features, offset),
                cls=_with_local(all_image.cls, image.cls, offset),
            )
            offset_v = offset

        gamma = inverse_temperature
        terms = {
            "a2v": infonce(gamma * self._similarity(contrast, all_image), offset_v),
            "v2a": infonce(gamma * self._similarity(all_audio, image).T, offset_a),
        }
        with torch.autocast(audio.features.device.type, enabled=False):
            # Regularisers are means of squares of a small volume: compute them in at least fp32.
            local_a, local_v, every_v = (
                _at_least_fp32(x) for x in (audio.features, image.features, all_image.features)
            )
            paired = paired_sim_volume(local_a, local_v, c.heads)
            nonneg = nonnegativity(local_a, every_v, c.heads, c.nonneg_samples, generator)
        terms["dis"] = disentanglement(paired)
        terms["splice"] = (
            weighted_square_mean(paired, splice_mask)
            if splice_mask is not None
            else paired.new_zeros(())
        )
        terms["silence"] = weighted_square_mean(paired, 1 - audio.mask)
        terms["cal"] = calibration(gamma)
        terms["nonneg"] = nonneg
        terms["tv"] = total_variation(paired)
        weights = {
            "dis": c.dis_weight if dis_weight is None else dis_weight,
            "splice": c.splice_weight,
            "silence": c.silence_weight,
            "cal": c.cal_weight,
            "nonneg": c.nonneg_weight,
            "tv": c.tv_weight,
        }
        terms["loss"] = (
            terms["a2v"] + terms["v2a"] + sum(w * terms[name] for name, w in weights.items())
        )
        return terms
