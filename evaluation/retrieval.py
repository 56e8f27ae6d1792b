"""Cross-modal retrieval (paper section 4.4, Table 2): N-way (1000 by default), R@1/5/10 both ways.

All clips of the pool are encoded once; the N x N similarity matrix uses the model's configured
aggregation (``model.similarity``), block by block over audio queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from denseav.model import DenseAV
from evaluation.metrics import retrieval_hubs, retrieval_ranks, retrieval_recall
from evaluation.pairs import Pair
from evaluation.runtime import batched, encode_pairs


@dataclass
class EncodedPool:
    """Features of every clip of a pool, on the CPU.

    Attributes: image ``(N, C, h, w)``, image_cls ``(N, C)``, audio ``(N, C, T)``, audio_mask
    ``(N, T)``, audio_cls ``(N, C)``, keys ``N`` sample keys.
    """

    image: torch.Tensor
    image_cls: torch.Tensor
    audio: torch.Tensor
    audio_mask: torch.Tensor
    audio_cls: torch.Tensor
    keys: list[str]


def _pad_time(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, t - x.shape[-1]))


@torch.no_grad()
def encode_pool(
    model: DenseAV,
    pairs: Iterable[Pair],
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    total: int | None = None,
) -> EncodedPool:
    """Encode images (resize + centre crop to the model input) and audio of every pair, in eval mode."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("image", "image_cls", "audio", "audio_mask", "audio_cls")
    }
    keys: list[str] = []
    with tqdm(total=total, desc="encoding", unit="clip") as bar:
        for batch in batched(pairs, batch_size):
            img, aud = encode_pairs(
                model, [p.image for p in batch], [p.audio for p in batch], device
            )
            for name, value in (
                ("image", img.features),
                ("image_cls", img.cls),
                ("audio", aud.features),
                ("audio_mask", aud.mask),
                ("audio_cls", aud.cls),
            ):
                parts[name].append(value.float().cpu())
            keys.extend(p.key for p in batch)
            bar.update(len(batch))
    if not keys:
        raise ValueError("the retrieval pool is empty")
    t = max(a.shape[-1] for a in parts["audio"])  # batches of different audio lengths
    return EncodedPool(
        image=torch.cat(parts["image"]),
        image_cls=torch.cat(parts["image_cls"]),
        audio=torch.cat([_pad_time(a, t) for a in parts["audio"]]),
        audio_mask=torch.cat([_pad_time(m, t) for m in parts["audio_mask"]]),
        audio_cls=torch.cat(parts["audio_cls"]),
        keys=keys,
    )


@torch.no_grad()
def similarity_matrix(
    model: DenseAV, pool: EncodedPool, block: int = 32, device: torch.device | str = "cpu"
) -> np.ndarray:
    """``(N, N)`` clip similarities, ``[audio i, image j]``, by the model's aggregation."""
    n = len(pool.keys)
    rows = []
    image, image_cls = pool.image.to(device), pool.image_cls.to(device)
    for start in range(0, n, block):
        sl = slice(start, min(start + block, n))
        rows.append(
            model.similarity(
                pool.audio[sl].to(device),
                image,
                pool.audio_mask[sl].to(device),
                audio_cls=pool.audio_cls[sl].to(device),
                image_cls=image_cls,
            )
            .float()
            .cpu()
        )
    return torch.cat(rows).numpy()


def evaluate_retrieval(
    model: DenseAV,
    pool: EncodedPool,
    ks: tuple[int, ...] = (1, 5, 10),
    device: torch.device | str = "cpu",
) -> dict:
    """Recall at ``ks`` both ways, the median rank (1 = first) of each direction, every query and
    the hubs.

    ``queries[direction]`` lists, in pool order, each query's key, the rank of its own partner
    (1 = first) and the key of the candidate ranked first: what a failed query retrieved instead.
    ``hubs[direction]`` lists the candidates retrieved first in place of the partner by two or
    more queries, with how many (:func:`evaluation.metrics.retrieval_hubs`), most first.
    """
    sim = similarity_matrix(model, pool, device=device)
    ranks = retrieval_ranks(sim)
    top = {"a2v": sim.argmax(axis=1), "v2a": sim.argmax(axis=0)}
    hubs = retrieval_hubs(sim)
    return {
        "pool": len(pool.keys),
        "recall": retrieval_recall(sim, ks),
        "median_rank": {d: float(np.median(r) + 1) for d, r in ranks.items()},
        "chance": {f"R@{k}": min(1.0, k / len(pool.keys)) for k in ks},
        "queries": {
            d: [
                {"key": key, "rank": int(rank) + 1, "top": pool.keys[int(t)]}
                for key, rank, t in zip(pool.keys, ranks[d], top[d])
            ]
            for d in ("a2v", "v2a")
        },
        "hubs": {
            d: [{"key": pool.keys[j], "queries": count} for j, count in hubs[d]]
            for d in ("a2v", "v2a")
        },
    }
