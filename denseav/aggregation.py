"""Clip-level similarity ``S (Ba, Bv)`` from dense features: DenseAV's and the Table 4 baselines.

One config value (``DenseAVConfig.aggregation``) picks the method:

- ``"multihead"``: DenseAV (paper eq. 2, DESIGN.md 3.2): max over heads and space, masked mean over
  time, via ``denseav.similarity.aggregate`` (or ``aggregate_naive`` with ``impl="naive"``).
- ``"maxspace"``: the same with a single head (all channels in one inner product).
- ``"avgpool"``: inner product of the (masked) time-average audio feature and the space-average
  image feature.
- ``"cls"``: inner product of the global (CLS-style) tokens of both modalities.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from denseav import similarity
from denseav.config import AGGREGATIONS, SIMILARITY_IMPLS, DenseAVConfig

AggregateFn = Callable[..., torch.Tensor]


def aggregate_function(impl: str) -> AggregateFn:
    """``denseav.similarity.aggregate`` for ``"fused"``, ``aggregate_naive`` for ``"naive"``."""
    if impl == "fused":
        return similarity.aggregate
    if impl == "naive":
        return similarity.aggregate_naive
    raise ValueError(f"similarity_impl={impl!r}; choose from {SIMILARITY_IMPLS}")


def masked_time_mean(
    audio: torch.Tensor, audio_mask: torch.Tensor | None, eps: float = 1e-6
) -> torch.Tensor:
    """``(B, C, T), (B, T) -> (B, C)``: mean over time weighted by the mask (plain mean when None)."""
    if audio_mask is None:
        return audio.mean(dim=-1)
    weights = audio_mask.to(audio.dtype).unsqueeze(1)
    return (audio * weights).sum(-1) / weights.sum(-1).clamp_min(eps)


def similarity_matrix(
    audio: torch.Tensor,
    image: torch.Tensor,
    audio_mask: torch.Tensor | None = None,
    *,
    method: str = "multihead",
    heads: int = 1,
    audio_cls: torch.Tensor | None = None,
    image_cls: torch.Tensor | None = None,
    impl: str = "fused",
) -> torch.Tensor:
    """Similarity of every audio clip with every image.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``. audio_mask: ``(Ba, T)`` in ``[0, 1]`` or None.
        method: one of ``AGGREGATIONS``. heads: heads of the "multihead" method.
        audio_cls: ``(Ba, C)``, image_cls: ``(Bv, C)``: global tokens, required by ``"cls"``.
        impl: ``"fused"`` or ``"naive"`` implementation of the multi-head aggregation.
    Returns:
        ``(Ba, Bv)``.
    """
    # Under autocast the two branches can end in different dtypes (a residual in fp32, a conv in
    # bf16); compare them in the wider one.
    dtype = torch.promote_types(audio.dtype, image.dtype)
    audio, image = audio.to(dtype), image.to(dtype)
    if method == "multihead":
        return aggregate_function(impl)(audio, image, heads, audio_mask=audio_mask)
    if method == "maxspace":
        return aggregate_function(impl)(audio, image, 1, audio_mask=audio_mask)
    if method == "avgpool":
        return masked_time_mean(audio, audio_mask) @ image.flatten(2).mean(-1).T
    if method == "cls":
        if audio_cls is None or image_cls is None:
            raise ValueError("aggregation='cls' needs audio_cls and image_cls (the global tokens)")
        return audio_cls.to(dtype) @ image_cls.to(dtype).T
    raise ValueError(f"aggregation={method!r}; choose from {AGGREGATIONS}")


def configured_similarity(
    config: DenseAVConfig,
    audio: torch.Tensor,
    image: torch.Tensor,
    audio_mask: torch.Tensor | None = None,
    *,
    audio_cls: torch.Tensor | None = None,
    image_cls: torch.Tensor | None = None,
) -> torch.Tensor:
    """``similarity_matrix`` with the aggregation, heads and implementation of ``config``: the one
    similarity the model reports and its loss trains. Shapes as there."""
    return similarity_matrix(
        audio,
        image,
        audio_mask,
        method=config.aggregation,
        heads=config.heads,
        audio_cls=audio_cls,
        image_cls=image_cls,
        impl=config.similarity_impl,
    )
