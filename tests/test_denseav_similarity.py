"""The fused, memory-bounded `aggregate` against the naive einsum volume: values, gradients,
masks, ties, strides, dtypes, and what it allocates; for the max over positions (the paper) and
the log-mean-exp (`spatial_temperature` > 0)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from denseav.similarity import (
    aggregate,
    aggregate_naive,
    max_similarity,
    paired_sim_volume,
    pool_volume,
    sim_volume,
    soft_similarity,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Correctness only: one thread keeps these many tiny ops fast on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# 0: the max over positions; 0.7: the log-mean-exp, about as soft as the unit-variance scores.
TEMPERATURES = [0.0, 0.7]

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
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_matches_naive_volume(device, heads, masked, tau):
    audio, image = features(device=device)
    mask = soft_mask(5, 7, device).requires_grad_() if masked else None
    fused = values_and_grads(aggregate, audio, image, heads, mask, spatial_temperature=tau)
    naive = values_and_grads(aggregate_naive, audio, image, heads, mask, spatial_temperature=tau)
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


@pytest.mark.parametrize("chunk_elements", [1, 17, 64, 1000, 1 << 19])
def test_soft_chunking_changes_nothing(chunk_elements):
    audio, image = features(ba=6, bv=5, c=8, t=9, h=4, w=3)
    chunked = values_and_grads(
        soft_similarity, audio, image, 2, temperature=0.7, chunk_elements=chunk_elements
    )
    naive = values_and_grads(
        lambda a, v, k: pool_volume(sim_volume(a, v, k), 0.7), audio, image, 2
    )
    for got, want in zip(chunked, naive):
        torch.testing.assert_close(got, want)


def test_soft_terms_far_below_the_best_change_nothing():
    """Scores spread over hundreds of tau: most terms sit far under the EXP_FLOOR."""
    audio, image = features(ba=4, bv=3, c=16, t=5, h=4, w=4, dtype=torch.float64)
    audio = (audio.detach() * 10).requires_grad_()
    fused = values_and_grads(soft_similarity, audio, image, 2, temperature=0.1)
    naive = values_and_grads(
        lambda a, v, k: pool_volume(sim_volume(a, v, k), 0.1), audio, image, 2
    )
    for got, want in zip(fused, naive):
        torch.testing.assert_close(got, want)


def test_log_mean_exp_lies_between_the_max_and_the_mean_of_positions():
    audio, image = features(ba=3, bv=2, c=8, t=4, h=3, w=3, dtype=torch.float64)
    volume = sim_volume(audio, image, 2).detach()
    most = volume.amax(dim=(2, 4, 5))
    mean = volume.mean(dim=(4, 5)).amax(dim=2)
    soft = [pool_volume(volume, tau) for tau in (1e-3, 0.3, 1.0, 3.0, 1e4)]
    torch.testing.assert_close(soft[0], most, atol=1e-2, rtol=0)
    torch.testing.assert_close(soft[-1], mean, atol=1e-3, rtol=0)
    for sharper, softer in itertools.pairwise(soft):
        assert torch.all(sharper >= softer)  # the log-mean-exp falls as tau grows
    assert torch.all(soft[1] <= most) and torch.all(soft[1] >= mean)


def test_soft_gradient_reaches_every_position_of_the_winning_head_only():
    audio, image = features(ba=1, bv=1, c=8, t=1, h=3, w=3, dtype=torch.float64)
    volume = sim_volume(audio, image, 2).detach()  # (1, 1, heads, 1, 3, 3)
    pooled = [float(pool_volume(volume[:, :, k : k + 1], 0.5)) for k in range(2)]
    head = int(pooled[1] > pooled[0])
    (grad_image,) = torch.autograd.grad(soft_similarity(audio, image, 2, 0.5).sum(), [image])
    per_head = grad_image.view(2, 4, 9).abs().sum(1)  # (heads, positions)
    assert torch.all(per_head[head] > 0)
    assert torch.all(per_head[1 - head] == 0)


def test_gradcheck_float64():
    audio, image = features(ba=3, bv=2, c=6, t=3, h=2, w=2, dtype=torch.float64)
    mask = soft_mask(3, 3).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, v, m: aggregate(a, v, 2, m), (audio, image, mask))
    assert torch.autograd.gradcheck(
        lambda a, v: max_similarity(a, v, 3, chunk_elements=12), (audio, image), fast_mode=True
    )
    assert torch.autograd.gradcheck(
        lambda a, v, m: aggregate(a, v, 2, m, spatial_temperature=0.4), (audio, image, mask)
    )
    assert torch.autograd.gradcheck(
        lambda a, v: soft_similarity(a, v, 3, 0.4, chunk_elements=12), (audio, image)
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


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_non_contiguous_inputs(tau):
    gen = torch.Generator().manual_seed(3)
    audio = (
        torch.randn(5, 7, 12, generator=gen).transpose(1, 2).requires_grad_()
    )  # strided (Ba, C, T)
    base = torch.randn(4, 12, 6, 10, generator=gen)
    image = base.contiguous(memory_format=torch.channels_last)[:, :, ::2, 1:6].requires_grad_()
    assert not audio.is_contiguous() and not image.is_contiguous()
    mask = soft_mask(5, 7)
    fused = values_and_grads(aggregate, audio, image, 2, mask, spatial_temperature=tau)
    naive = values_and_grads(aggregate_naive, audio, image, 2, mask, spatial_temperature=tau)
    for got, want in zip(fused, naive):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("tau", TEMPERATURES)
def test_autocast_bfloat16_keeps_float32_results(tau):
    audio, image = features(ba=4, bv=3, c=16, t=6, h=4, w=4)
    mask = soft_mask(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = aggregate(audio, image, 2, mask, spatial_temperature=tau)
        naive = aggregate_naive(audio, image, 2, mask, spatial_temperature=tau)
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


def test_soft_never_allocates_the_volume():
    audio, image = features(ba=6, bv=6, c=8, t=10, h=6, w=6)
    chunk = 256
    bound = max(chunk, image.numel(), audio.numel())
    assert bound * 10 < 6 * 6 * 2 * 10 * 6 * 6  # the volume
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(t.numel()) or t, lambda t: t
    ), _LargestTensor() as fused:
        best = soft_similarity(audio, image, 2, 0.5, chunk_elements=chunk)
        best.square().sum().backward()
    assert {"bmm", "amax", "exp_", "eq"} <= fused.ops  # both passes were seen (eq: backward)
    assert fused.largest <= bound
    assert max(saved) <= max(image.numel(), best.numel())


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_soft_similarity_needs_a_positive_temperature(tau):
    audio, image = features()
    with pytest.raises(ValueError, match="temperature"):
        soft_similarity(audio, image, 2, tau)


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
