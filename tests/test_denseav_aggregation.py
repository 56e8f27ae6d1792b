"""Table 4 aggregations (denseav.aggregation) against explicit loops."""

import pytest
import torch

from denseav import aggregation, similarity
from denseav.aggregation import masked_time_mean, similarity_matrix


def _loop_multihead(audio, image, heads, mask):
    ba, c, t = audio.shape
    bv, _, h, w = image.shape
    d = c // heads
    out = torch.zeros(ba, bv, dtype=audio.dtype)
    for i in range(ba):
        for j in range(bv):
            num, den = 0.0, 0.0
            for tt in range(t):
                best = max(
                    float(audio[i, k * d : (k + 1) * d, tt] @ image[j, k * d : (k + 1) * d, y, x])
                    for k in range(heads)
                    for y in range(h)
                    for x in range(w)
                )
                num += float(mask[i, tt]) * best
                den += float(mask[i, tt])
            out[i, j] = num / max(den, 1e-6)
    return out


def _inputs(seed=0, ba=3, bv=2, c=6, t=4, h=2, w=3):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(ba, c, t, generator=g, dtype=torch.float64)
    image = torch.randn(bv, c, h, w, generator=g, dtype=torch.float64)
    mask = torch.tensor(
        [[1.0, 1.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64
    )
    return audio, image, mask[:ba]


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_multihead_matches_loops_with_masks_and_fully_masked_row(heads):
    audio, image, mask = _inputs()
    got = similarity_matrix(audio, image, mask, method="multihead", heads=heads)
    torch.testing.assert_close(got, _loop_multihead(audio, image, heads, mask))
    assert torch.equal(got[2], torch.zeros(2, dtype=got.dtype))  # fully masked row: 0, finite


def test_maxspace_is_single_head_whatever_heads_says():
    audio, image, mask = _inputs(1)
    got = similarity_matrix(audio, image, mask, method="maxspace", heads=3)
    torch.testing.assert_close(got, _loop_multihead(audio, image, 1, mask))


def test_avgpool_matches_loops():
    audio, image, mask = _inputs(2)
    got = similarity_matrix(audio, image, mask, method="avgpool", heads=2)
    expected = torch.zeros(3, 2, dtype=torch.float64)
    for i in range(3):
        den = max(float(mask[i].sum()), 1e-6)
        a = sum(audio[i, :, t] * mask[i, t] for t in range(4)) / den
        for j in range(2):
            v = image[j].reshape(6, -1).mean(-1)
            expected[i, j] = a @ v
    torch.testing.assert_close(got, expected)


def test_masked_time_mean_hand_worked():
    audio = torch.tensor([[[1.0, 3.0, 100.0]]])
    torch.testing.assert_close(
        masked_time_mean(audio, torch.tensor([[1.0, 1.0, 0.0]])), torch.tensor([[2.0]])
    )
    torch.testing.assert_close(
        masked_time_mean(audio, torch.tensor([[1.0, 0.5, 0.0]])), torch.tensor([[5 / 3]])
    )
    torch.testing.assert_close(masked_time_mean(audio, None), torch.tensor([[104 / 3]]))


def test_cls_is_inner_product_of_global_tokens_and_needs_them():
    audio, image, mask = _inputs(3)
    a_cls = torch.tensor(
        [[1.0, 0, 0, 0, 0, 2.0], [0, 1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float64
    )
    v_cls = torch.tensor([[3.0, 0, 0, 0, 0, 1.0], [0, -2.0, 0, 0, 0, 0]], dtype=torch.float64)
    got = similarity_matrix(audio, image, mask, method="cls", audio_cls=a_cls, image_cls=v_cls)
    torch.testing.assert_close(
        got, torch.tensor([[5.0, 0.0], [0.0, -2.0], [0.0, 0.0]], dtype=torch.float64)
    )
    with pytest.raises(ValueError, match="cls"):
        similarity_matrix(audio, image, mask, method="cls")


def test_unknown_method_and_impl_are_errors():
    audio, image, mask = _inputs()
    with pytest.raises(ValueError, match="aggregation"):
        similarity_matrix(audio, image, mask, method="mean")
    with pytest.raises(ValueError, match="similarity_impl"):
        aggregation.aggregate_function("fast")


def test_impl_switch_dispatches_to_naive(monkeypatch):
    calls = []

    def naive(audio, image, heads, audio_mask=None):
        calls.append(heads)
        return similarity.sim_volume(audio, image, heads).flatten(-2).amax(-1).amax(2).mean(-1)

    monkeypatch.setattr(similarity, "aggregate_naive", naive, raising=False)
    audio, image, _ = _inputs()
    got = similarity_matrix(audio, image, None, method="multihead", heads=2, impl="naive")
    assert calls == [2]
    torch.testing.assert_close(
        got, similarity_matrix(audio, image, None, method="multihead", heads=2)
    )
    assert aggregation.aggregate_function("fused") is similarity.aggregate


@pytest.mark.parametrize("method", ["multihead", "maxspace", "avgpool"])
def test_gradients_gradcheck(method):
    audio, image, mask = _inputs(4, ba=2, bv=2, c=4, t=3, h=2, w=2)
    mask = mask[:2, :3].clone()
    audio.requires_grad_(True)
    image.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, v: similarity_matrix(a, v, mask, method=method, heads=2), (audio, image)
    )


def test_naive_impl_agrees_with_fused():
    audio, image, mask = _inputs(5)
    fused = similarity_matrix(audio, image, mask, method="multihead", heads=3)
    naive = similarity_matrix(audio, image, mask, method="multihead", heads=3, impl="naive")
    torch.testing.assert_close(naive, fused)
    torch.testing.assert_close(naive, _loop_multihead(audio, image, 3, mask))
