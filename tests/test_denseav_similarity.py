"""The fused, memory-bounded `aggregate` against the naive einsum volume: values, gradients,
masks, ties, strides, dtypes, and what it allocates."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from denseav.similarity import (
    aggregate,
    aggregate_naive,
    max_similarity,
    paired_sim_volume,
    sim_volume,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Correctness only: one thread keeps these many tiny ops fast on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


def features(ba=5, bv=4, c=12, t=7, h=3, w=5, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(ba, c, t, generator=gen, dtype=dtype).to(device).requires_grad_()
    image = torch.randn(bv, c, h, w, generator=gen, dtype=dtype).to(device).requires_grad_()
    return audio, image


def soft_mask(ba, t, device="cpu", seed=1):
    """Soft weights, one clip with a padded tail and one fully masked clip."""
    mask = torch.rand(ba, t, generator=torch.Generator().manual_seed(seed))
    mask[0, t // 2 :] = 0
    mask[1] = 0
    return mask.to(device)


def values_and_grads(fn, audio, image, heads, mask=None, **kwargs):
    out = (
        fn(audio, image, heads, **kwargs)
        if mask is None
        else fn(audio, image, heads, mask, **kwargs)
    )
    weights = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype
    ).to(out.device)
    inputs = [audio, image] + ([mask] if mask is not None and mask.requires_grad else [])
    return (out, *torch.autograd.grad((out * weights).sum(), inputs))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("heads", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_naive_volume(device, heads, masked):
    audio, image = features(device=device)
    mask = soft_mask(5, 7, device).requires_grad_() if masked else None
    fused = values_and_grads(aggregate, audio, image, heads, mask)
    naive = values_and_grads(aggregate_naive, audio, image, heads, mask)
    for got, want in zip(fused, naive):
        torch.testing.assert_close(got, want)
    if masked:
        assert torch.all(fused[0][1] == 0), "a fully masked clip scores 0"
        assert torch.all(fused[1][1] == 0), "and gets no gradient"
        assert all(torch.isfinite(g).all() for g in fused)


@pytest.mark.parametrize("chunk_elements", [1, 17, 64, 1000, 1 << 19])
def test_chunking_changes_nothing(chunk_elements):
    audio, image = features(ba=6, bv=5, c=8, t=9, h=4, w=3)
    reference = values_and_grads(max_similarity, audio, image, 2)
    chunked = values_and_grads(max_similarity, audio, image, 2, chunk_elements=chunk_elements)
    for got, want in zip(chunked, reference):
        torch.testing.assert_close(got, want)
    naive_best = sim_volume(audio, image, 2).amax(dim=(2, 4, 5))
    torch.testing.assert_close(chunked[0], naive_best)


def test_gradcheck_float64():
    audio, image = features(ba=3, bv=2, c=6, t=3, h=2, w=2, dtype=torch.float64)
    mask = soft_mask(3, 3).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, v, m: aggregate(a, v, 2, m), (audio, image, mask))
    assert torch.autograd.gradcheck(
        lambda a, v: max_similarity(a, v, 3, chunk_elements=12), (audio, image), fast_mode=True
    )


def test_ties_go_to_the_first_maximum_deterministically():
    # Every position and both heads hold the same vector: every score of a pair ties. Small
    # integers make every inner product exact, whatever order a matrix product sums in.
    gen = torch.Generator().manual_seed(4)
    audio = torch.randint(-3, 4, (3, 4, 5), generator=gen).float().repeat(1, 2, 1).requires_grad_()
    image = (
        torch.randint(-3, 4, (2, 4, 1, 1), generator=gen)
        .float()
        .repeat(1, 2, 3, 3)
        .requires_grad_()
    )
    runs = [
        values_and_grads(max_similarity, audio, image, 2, chunk_elements=ce)
        for ce in (1, 7, 1 << 19)
    ]
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            assert torch.equal(got, want)
    best, grad_audio, grad_image = runs[0]
    naive_best, naive_audio, naive_image = values_and_grads(
        lambda a, v, k: sim_volume(a, v, k).amax(dim=(2, 4, 5)), audio, image, 2
    )
    torch.testing.assert_close(best, naive_best)
    # The whole gradient lands on head 0 at position (0, 0); the naive amax spreads it evenly.
    assert torch.all(grad_image[:, 4:] == 0) and torch.all(grad_image.flatten(2)[:, :, 1:] == 0)
    assert torch.all(grad_audio[:, 4:] == 0)
    torch.testing.assert_close(
        grad_image.sum(dim=(2, 3)).view(2, 2, 4).sum(1),
        naive_image.sum(dim=(2, 3)).view(2, 2, 4).sum(1),
    )
    torch.testing.assert_close(
        grad_audio.view(3, 2, 4, 5).sum(1), naive_audio.view(3, 2, 4, 5).sum(1)
    )


def test_non_contiguous_inputs():
    gen = torch.Generator().manual_seed(3)
    audio = (
        torch.randn(5, 7, 12, generator=gen).transpose(1, 2).requires_grad_()
    )  # strided (Ba, C, T)
    base = torch.randn(4, 12, 6, 10, generator=gen)
    image = base.contiguous(memory_format=torch.channels_last)[:, :, ::2, 1:6].requires_grad_()
    assert not audio.is_contiguous() and not image.is_contiguous()
    mask = soft_mask(5, 7)
    fused = values_and_grads(aggregate, audio, image, 2, mask)
    naive = values_and_grads(aggregate_naive, audio, image, 2, mask)
    for got, want in zip(fused, naive):
        torch.testing.assert_close(got, want)


def test_autocast_bfloat16_keeps_float32_results():
    audio, image = features(ba=4, bv=3, c=16, t=6, h=4, w=4)
    mask = soft_mask(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = aggregate(audio, image, 2, mask)
        naive = aggregate_naive(audio, image, 2, mask)
    assert fused.dtype == naive.dtype == torch.float32
    torch.testing.assert_close(fused, naive, rtol=2e-2, atol=2e-2)
    grad_audio, grad_image = torch.autograd.grad(fused.sum(), [audio, image])
    assert grad_audio.dtype == grad_image.dtype == torch.float32
    assert torch.isfinite(grad_audio).all() and torch.isfinite(grad_image).all()


class _LargestTensor(TorchDispatchMode):
    """Records the op names and the largest tensor any op returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest, self.ops = 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.__name__.split(".")[0])
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_never_allocates_the_volume():
    audio, image = features(ba=6, bv=6, c=8, t=10, h=6, w=6)
    volume = 6 * 6 * 2 * 10 * 6 * 6
    chunk = 256
    bound = max(chunk, image.numel(), audio.numel())
    assert bound * 10 < volume

    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.numel()) or t, lambda t: t
    ), _LargestTensor() as fused:
        best = max_similarity(audio, image, 2, chunk_elements=chunk)
        best.square().sum().backward()
    assert {"bmm", "max_pool2d_with_indices", "index_add_"} <= fused.ops  # both passes were seen
    assert fused.largest <= bound
    assert max(saved) <= max(image.numel(), best.numel())

    with _LargestTensor() as naive:
        aggregate_naive(audio, image, 2).sum().backward()
    assert naive.largest >= volume  # the recorder does see a volume when one is built


def test_paired_volume_is_the_diagonal():
    audio, image = features(ba=3, bv=3)
    paired = paired_sim_volume(audio, image, 2)
    full = sim_volume(audio, image, 2)
    torch.testing.assert_close(paired, full[torch.arange(3), torch.arange(3)])


@pytest.mark.parametrize(
    "audio_shape, image_shape, heads, mask_shape, message",
    [
        ((2, 6, 4), (3, 8, 2, 2), 2, None, "channels"),
        ((2, 6, 4), (3, 6, 2, 2), 4, None, "divisible"),
        ((2, 6, 4), (3, 6, 2, 2), 2, (2, 5), "audio_mask"),
        ((2, 6), (3, 6, 2, 2), 2, None, "expected audio"),
    ],
)
def test_bad_shapes_are_named(audio_shape, image_shape, heads, mask_shape, message):
    mask = None if mask_shape is None else torch.ones(mask_shape)
    with pytest.raises(ValueError, match=message):
        aggregate(torch.randn(audio_shape), torch.randn(image_shape), heads, mask)
