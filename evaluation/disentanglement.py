"""Disentanglement of a two-head model (paper section 4.5, eq. 6-8).

Clips of a sound dataset (AudioSet-like) and a language dataset (PlacesAudio-like) are scored
per head with their own image: ``S(a, v)_k``, eq. 2 without the max over heads. The scores are
min-max scaled per head over both datasets, then PredDis and ActDis take the best of the two
head-to-dataset assignments.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from tqdm import tqdm

from denseav.model import DenseAV
from denseav.similarity import paired_sim_volume
from evaluation.heatmaps import head_clip_scores
from evaluation.metrics import act_dis, min_max_scale_heads, pred_dis
from evaluation.pairs import Pair
from evaluation.runtime import batched, encode_pairs


@torch.no_grad()
def clip_head_scores(
    model: DenseAV,
    pairs: Iterable[Pair],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    desc: str = "clips",
    total: int | None = None,
) -> np.ndarray:
    """``(B, K)`` per-head similarity of every clip with its own image, in eval mode."""
    model.eval()
    out: list[np.ndarray] = []
    with tqdm(total=total, desc=desc, unit="clip") as bar:
        for batch in batched(pairs, batch_size):
            img, aud = encode_pairs(
                model, [p.image for p in batch], [p.audio for p in batch], device
            )
            volume = paired_sim_volume(aud.features, img.features, model.config.heads).float()
            out.append(head_clip_scores(volume, aud.mask).cpu().numpy())
            bar.update(len(batch))
    if not out:
        raise ValueError(f"no {desc} to score")
    return np.concatenate(out)


def evaluate_disentanglement(sound_scores: np.ndarray, speech_scores: np.ndarray) -> dict:
    """PredDis and ActDis from per-head scores ``(Bs, 2)`` of sound and ``(Bl, 2)`` of language clips.

    Also reports each head's mean scaled score on each dataset, and which head is the sound head
    (the one more active on the sound clips).
    """
    scores = np.concatenate([sound_scores, speech_scores])
    is_sound = np.r_[np.ones(len(sound_scores), bool), np.zeros(len(speech_scores), bool)]
    scaled = min_max_scale_heads(scores)
    means = {
        f"head{k}": {
            "sound": float(scaled[is_sound, k].mean()),
            "language": float(scaled[~is_sound, k].mean()),
        }
        for k in range(scores.shape[1])
    }
    sound_head = int(
        np.argmax(
            [
                scaled[is_sound, k].mean() - scaled[~is_sound, k].mean()
                for k in range(scores.shape[1])
            ]
        )
    )
    return {
        "PredDis": pred_dis(scores, is_sound),
        "ActDis": act_dis(scores, is_sound),
        "clips": {"sound": len(sound_scores), "language": len(speech_scores)},
        "mean_scaled_activation": means,
        "sound_head": sound_head,
    }
