"""Similarity operators between dense audio and image features (DESIGN.md section 3.2).

Features: audio ``(B, C, T)``, image ``(B, C, H, W)``. ``C`` is split into ``heads`` contiguous
blocks of ``D = C // heads`` channels; head ``k`` owns channels ``[k * D, (k + 1) * D)``.

``aggregate`` is the training hot path. At the paper's scale (80 x 80 pairs, 2 heads, 56 audio
tokens, 28 x 28 image tokens) the all-pairs volume ``sim_volume`` holds 562 M floats (2.2 GB in
float32, twice that with its gradient), so ``aggregate`` never builds it: ``max_similarity``
computes the per-token maxima chunk by chunk and keeps only what the max and its gradient need.
``aggregate_naive`` is the same formula over the full volume, kept as the reference and for
comparison (``DenseAVConfig.similarity_impl = "naive"``); ``benchmarks/aggregation.py`` measures
both.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

# Inner products per chunk on a CPU (8 MiB in float32, 1/270 of the volume at the paper's scale).
# Measured on a 2-core Xeon (benchmarks/aggregation.py, forward at the paper's scale against the
# matmul floor): 2^20-2^21 keep the matrix products efficient and the max that follows reading
# from cache (1.05-1.11x with 1 thread; 2^21 1.09x, 2^20 1.14x with 2); 2^22 and larger spill the
# cache (1.27x with 1 thread); 2^19 loses matmul efficiency (1.15x with 1 thread, 1.44x with 2).
CHUNK_ELEMENTS = 1 << 21
# On accelerators every op is a kernel launch: far fewer, larger chunks (64 MiB in float32, 1/35
# of the paper-scale volume).
ACCELERATOR_CHUNK_ELEMENTS = 1 << 24


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, C, ...) -> (B, heads, C // heads, ...)``."""
    b, c = x.shape[:2]
    if c % heads:
        raise ValueError(f"feature dim {c} is not divisible by heads={heads}")
    return x.reshape(b, heads, c // heads, *x.shape[2:])


def sim_volume(audio: torch.Tensor, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Raw inner products of every audio clip with every image.

    Memory is ``Ba * Bv * heads * T * H * W`` elements: use it for small batches (heatmaps,
    tests); training aggregates with ``aggregate``, which never builds it.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``.
    Returns:
        ``(Ba, Bv, heads, T, H, W)``.
    """
    return torch.einsum(
        "akct,bkchw->abkthw", _split_heads(audio, heads), _split_heads(image, heads)
    )


def paired_sim_volume(audio: torch.Tensor, image: torch.Tensor, heads: int) -> torch.Tensor:
    """Inner products of matching pairs: ``(B, C, T), (B, C, H, W) -> (B, heads, T, H, W)``.

    Needs no chunked path: it is ``1 / B`` of the all-pairs volume and smaller than the image
    features it is computed from whenever ``heads * T < C`` (paper scale: 80 x 2 x 56 x 28 x 28
    floats = 28 MB against 96 MB of image features), so autograd's plain einsum, which keeps
    only the two inputs for the backward pass, is already linear in the batch.
    """
    return torch.einsum("bkct,bkchw->bkthw", _split_heads(audio, heads), _split_heads(image, heads))


def _check_pair(audio: torch.Tensor, image: torch.Tensor, heads: int) -> None:
    if audio.dim() != 3 or image.dim() != 4:
        raise ValueError(
            "expected audio (Ba, C, T) and image (Bv, C, H, W), "
            f"got {tuple(audio.shape)} and {tuple(image.shape)}"
        )
    if audio.shape[1] != image.shape[1]:
        raise ValueError(f"audio has {audio.shape[1]} channels but image has {image.shape[1]}")
    if heads < 1 or audio.shape[1] % heads:
        raise ValueError(f"feature dim {audio.shape[1]} is not divisible by heads={heads}")
    if audio.dtype != image.dtype or audio.device != image.device:
        raise ValueError(
            f"audio ({audio.dtype}, {audio.device}) and image ({image.dtype}, {image.device}) "
            "must share dtype and device"
        )


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    """Near-equal ``[start, end)`` ranges of at most ``size`` covering ``range(total)``."""
    count = -(-total // size)
    bounds = [total * i // count for i in range(count + 1)]
    return list(itertools.pairwise(bounds))


def _audio_rows(audio: torch.Tensor, heads: int) -> torch.Tensor:
    """``(Ba, C, T) -> (Ba * T, heads, D)``: one row per audio token, contiguous (a copy)."""
    ba, c, t = audio.shape
    return audio.transpose(1, 2).reshape(ba * t, heads, c // heads).contiguous()


def _image_rows(image: torch.Tensor, heads: int) -> torch.Tensor:
    """``(b, C, H, W) -> (heads, b * H * W, D)``: one row per (head, image, position), a copy."""
    b, c, h, w = image.shape
    rows = image.reshape(b, heads, c // heads, h * w).permute(1, 0, 3, 2)
    return rows.reshape(heads, b * h * w, c // heads).contiguous()


class _FusedMaxSimilarity(torch.autograd.Function):
    """``best[i, j, t] = max_{k,h,w} s[i, j, k, t, h, w]`` without the volume ``s``.

    Forward, per chunk of images x audio tokens: one batched matrix product gives the chunk's
    inner products for every head, laid out as a channels-last ``(images, tokens, heads * H, W)``
    map, and a whole-map ``max_pool2d`` returns their maxima *and* positions in one vectorised
    pass (~0.1x the matrix product's time on a CPU; ``torch.max(dim)`` costs ~0.5x). Stacking the
    heads along the map's height makes the pooled index ``k * H * W + h * W + w`` directly, and
    exact ties go to the first maximum in ``(head, h, w)`` order. The products are written into
    one reused buffer.

    Backward routes the gradient through the saved argmax (``Ba * Bv * T`` small ints) rather
    than recomputing the volume: the max is piecewise linear, so ``d best / d audio[i, :, t]`` is
    the winning image vector and ``d best / d image[j, :, h, w]`` the audio vector of every token
    that picked ``(h, w)``. That is ``Ba * Bv * T`` gathers and scatter-adds of ``D`` floats, a
    few percent of the forward's multiply-adds, where recomputation would repeat the forward's
    matrix products. Saved: the inputs (not copies) and the argmax; beyond the input gradients
    the backward only allocates per-chunk temporaries.
    """

    @staticmethod
    def forward(
        ctx, audio: torch.Tensor, image: torch.Tensor, heads: int, chunk_elements: int
    ) -> torch.Tensor:
        ba, c, t = audio.shape
        bv, _, h, w = image.shape
        hw, rows, d = h * w, ba * t, c // heads
        img_chunk, row_chunk = _chunk_sizes(
            rows, bv, heads * hw, chunk_elements, _parallel_images(audio.device, hw, chunk_elements)
        )
        best = torch.empty(bv, rows, dtype=audio.dtype, device=audio.device)
        small = heads * hw <= torch.iinfo(torch.int16).max
        argmax = torch.empty(
            bv, rows, dtype=torch.int16 if small else torch.int32, device=audio.device
        )
        dtype = _product_dtype(audio)
        # (heads, D, Ba * T): every audio token as a column, per head (a copy of the audio).
        columns = audio.reshape(ba, heads, d, t).permute(1, 2, 0, 3).reshape(heads, d, rows)
        columns = columns.to(dtype)
        buffer = torch.empty(img_chunk * heads * hw * row_chunk, dtype=dtype, device=audio.device)
        for j0, j1 in _chunks(bv, img_chunk):
            # (images, heads, H * W, D): a view of the image (a copy only if it has odd strides).
            positions = _split_heads(image[j0:j1], heads).flatten(3).transpose(2, 3).to(dtype)
            for r0, r1 in _chunks(rows, row_chunk):
                scores = buffer[: (j1 - j0) * heads * hw * (r1 - r0)].view(
                    j1 - j0, heads, hw, r1 - r0
                )
                torch.matmul(positions, columns[:, :, r0:r1], out=scores)
                # (images, heads * H * W, tokens) is a channels-last (images, tokens, K*H, W) map.
                maps = scores.view(j1 - j0, heads * h, w, r1 - r0).permute(0, 3, 1, 2)
                values, where = F.max_pool2d(maps, (heads * h, w), return_indices=True)
                best[j0:j1, r0:r1] = values.view(j1 - j0, r1 - r0)
                argmax[j0:j1, r0:r1] = where.view(j1 - j0, r1 - r0)
        ctx.save_for_backward(audio, image, argmax)
        ctx.heads, ctx.chunk_elements = heads, chunk_elements
        return best.view(bv, ba, t).permute(1, 0, 2)

    @staticmethod
    def backward(ctx, grad_best: torch.Tensor):
        audio, image, argmax = ctx.saved_tensors
        heads = ctx.heads
        need_audio, need_image = ctx.needs_input_grad[:2]
        ba, c, t = audio.shape
        bv, _, h, w = image.shape
        hw, rows, d = h * w, ba * t, c // heads
        # A chunk's temporaries: D gathered features per (image, token) pair (an eighth of the
        # forward's budget, 1 MiB by default on a CPU: the backward also holds the input
        # gradients), C * H * W per image.
        img_chunk, row_chunk = _chunk_sizes(rows, bv, d, ctx.chunk_elements // 8)
        img_chunk = min(img_chunk, max(1, ctx.chunk_elements // (c * hw)))
        # (Ba, heads, T, D): a view of the audio, gathered from in place (a token-major copy
        # would be faster to gather from but costs another audio-sized buffer).
        audio_tokens = _split_heads(audio, heads).transpose(2, 3)
        grad_arows = audio.new_zeros(rows * heads, d) if need_audio else None
        grad_image = (
            torch.empty(image.shape, dtype=image.dtype, device=image.device) if need_image else None
        )
        token = torch.arange(rows, device=audio.device)
        token_clip, token_time = token // t, token % t
        for j0, j1 in _chunks(bv, img_chunk):
            nj = j1 - j0
            vrows = _image_rows(image[j0:j1], heads).view(heads * nj * hw, d)
            grad_vrows = torch.zeros_like(vrows) if need_image else None
            local_image = torch.arange(nj, device=audio.device).unsqueeze(1)
            weights = grad_best[:, j0:j1].to(audio.dtype).permute(1, 0, 2).reshape(nj, rows)
            for r0, r1 in _chunks(rows, row_chunk):
                flat = argmax[j0:j1, r0:r1].long()
                head = flat // hw
                v_index = ((head * nj + local_image) * hw + flat - head * hw).flatten()
                a_index = (token[r0:r1] * heads + head).flatten()
                g = weights[:, r0:r1].reshape(-1, 1)
                if need_audio:
                    grad_arows.index_add_(0, a_index, vrows.index_select(0, v_index).mul_(g))
                if need_image:
                    tokens = audio_tokens[token_clip[r0:r1], head, token_time[r0:r1]].view(-1, d)
                    grad_vrows.index_add_(0, v_index, tokens.mul_(g))
            if need_image:
                grad_image[j0:j1].view(nj, heads, d, hw).copy_(
                    grad_vrows.view(heads, nj, hw, d).permute(1, 0, 3, 2)
                )
        # A transposed view of (Ba, T, C): the consumer's backward takes strided gradients, and a
        # contiguous copy would cost another audio-sized buffer.
        grad_audio = grad_arows.view(ba, t, c).transpose(1, 2) if need_audio else None
        return grad_audio, grad_image, None, None


def _product_dtype(features: torch.Tensor) -> torch.dtype:
    """The dtype autocast would give a matrix product of ``features`` (their own without it)."""
    device = features.device.type
    if features.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return features.dtype


def _chunk_sizes(
    rows: int, images: int, per_pair: int, chunk_elements: int, min_images: int = 1
) -> tuple[int, int]:
    """(images, audio tokens) per chunk: ~chunk_elements / per_pair (image, token) pairs, and
    at least min_images images (as far as there are)."""
    per_chunk = max(min(images, min_images), min(images, chunk_elements // (rows * per_pair)), 1)
    return per_chunk, max(1, min(rows, chunk_elements // (per_chunk * per_pair)))


def _parallel_images(device: torch.device, hw: int, chunk_elements: int) -> int:
    """Images per forward chunk that keep every CPU thread busy in ``max_pool2d``, which only
    parallelises over images, while leaving at least 256 audio tokens per matrix product."""
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), chunk_elements // (hw * 256)))


def max_similarity(
    audio: torch.Tensor, image: torch.Tensor, heads: int, *, chunk_elements: int | None = None
) -> torch.Tensor:
    """Best match of every audio token in every image: ``max_{k,h,w} s[i, j, k, t, h, w]``.

    Memory: about ``chunk_elements`` scores at a time plus ``Ba * Bv * T`` maxima and int16
    argmaxes, never the ``Ba x Bv x heads x T x H x W`` volume, in the forward and the backward
    pass. Gradients equal the naive volume's up to rounding; on exact ties the whole gradient goes
    to the first maximum in ``(head, h, w)`` order (the naive ``amax`` splits it evenly).

    Dtypes: float32/float64 (CPU or CUDA) compute in the inputs' dtype. Under ``torch.autocast``
    the matrix products run in the autocast dtype, as the naive einsum would, while the maxima are
    returned in the inputs' dtype (exactly the low-precision values, widened) so that the masked
    mean and the loss stay in full precision; gradients are computed from the full-precision
    features.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``, any strides. heads: divides ``C``.
        chunk_elements: scores computed per step (a memory/speed trade-off, not a result change);
            None: ``CHUNK_ELEMENTS`` on a CPU, ``ACCELERATOR_CHUNK_ELEMENTS`` elsewhere.
    Returns:
        ``(Ba, Bv, T)`` in the inputs' dtype.
    """
    _check_pair(audio, image, heads)
    if chunk_elements is None:
        chunk_elements = (
            CHUNK_ELEMENTS if audio.device.type == "cpu" else ACCELERATOR_CHUNK_ELEMENTS
        )
    return _FusedMaxSimilarity.apply(audio, image, heads, chunk_elements)


def _masked_mean(best: torch.Tensor, audio_mask: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``(Ba, Bv, T), (Ba, T) -> (Ba, Bv)``: mask-weighted mean over time (0 if fully masked)."""
    ba, _, t = best.shape
    if audio_mask is None:
        audio_mask = best.new_ones(ba, t)
    elif audio_mask.shape != (ba, t):
        raise ValueError(
            f"audio_mask has shape {tuple(audio_mask.shape)}; expected (Ba, T) = {(ba, t)}"
        )
    mask = audio_mask.to(best.dtype).unsqueeze(1)
    return (best * mask).sum(-1) / mask.sum(-1).clamp_min(eps)


def aggregate(
    audio: torch.Tensor,
    image: torch.Tensor,
    heads: int,
    audio_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Paper eq. 2 with multi-head max, ``S[i, j] = sum_t m[i,t] max_{k,h,w} s[i,j,k,t,h,w] /
    max(sum_t m[i,t], eps)``.

    Memory-bounded (see ``max_similarity`` for memory, ties and dtypes); same values and gradients
    as ``aggregate_naive`` up to rounding. The mask may be soft and may carry gradients.

    Args:
        audio: ``(Ba, C, T)``. image: ``(Bv, C, H, W)``.
        audio_mask: ``(Ba, T)`` in ``[0, 1]``, or None for all ones.
    Returns:
        ``(Ba, Bv)``.
    """
    return _masked_mean(max_similarity(audio, image, heads), audio_mask, eps)


def aggregate_naive(
    audio: torch.Tensor,
    image: torch.Tensor,
    heads: int,
    audio_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``aggregate`` through the full ``sim_volume``: the reference, memory ``O(Ba Bv K T H W)``."""
    _check_pair(audio, image, heads)
    best = sim_volume(audio, image, heads).amax(dim=(2, 4, 5)).to(audio.dtype)
    return _masked_mean(best, audio_mask, eps)
