"""Every loss term against an independent computation (loops, hand-worked values), plus gradients."""

import itertools
import math

import pytest
import torch

from denseav.config import DenseAVConfig
from denseav.losses import (
    DenseAVLoss,
    calibration,
    disentanglement,
    infonce,
    nonnegativity,
    total_variation,
    weighted_square_mean,
)
from denseav.model import AudioFeatures, ImageFeatures
from denseav.similarity import paired_sim_volume, sim_volume

F64 = torch.float64


def _features(b=4, c=6, t=5, h=2, w=3, seed=0, mask=None):
    g = torch.Generator().manual_seed(seed)
    audio = AudioFeatures(
        features=torch.randn(b, c, t, generator=g, dtype=F64),
        mask=torch.ones(b, t, dtype=F64) if mask is None else mask,
        cls=torch.randn(b, c, generator=g, dtype=F64),
    )
    image = ImageFeatures(
        features=torch.randn(b, c, h, w, generator=g, dtype=F64),
        cls=torch.randn(b, c, generator=g, dtype=F64),
    )
    return audio, image


def _loop_infonce(logits):
    """-1/(2B) sum_b log(exp(l[b, b]) / sum_b' exp(l[b, b']))."""
    b = len(logits)
    total = 0.0
    for i in range(b):
        total += math.log(math.exp(logits[i][i]) / sum(math.exp(logits[i][j]) for j in range(b)))
    return -total / (2 * b)


def test_infonce_matches_loop_and_hand_value():
    logits = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=F64)
    expected = -(math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(0.5)) / 4
    assert infonce(logits).item() == pytest.approx(expected)
    rand = torch.randn(5, 5, dtype=F64)
    assert infonce(rand).item() == pytest.approx(_loop_infonce(rand.tolist()))


def test_infonce_offset_selects_the_global_diagonal():
    logits = torch.randn(2, 6, dtype=F64)
    expected = -sum(torch.log_softmax(logits[i], 0)[3 + i] for i in range(2)) / 4
    torch.testing.assert_close(infonce(logits, offset=3), expected)


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_disentanglement_matches_loop(heads):
    paired = torch.randn(2, heads, 3, 2, 2, dtype=F64)
    if heads == 1:
        assert disentanglement(paired).item() == 0
        return
    pairs = list(itertools.combinations(range(heads), 2))
    expected = 0.0
    for k1, k2 in pairs:
        vals = [
            abs(paired[b, k1, t, y, x] * paired[b, k2, t, y, x])
            for b in range(2)
            for t in range(3)
            for y in range(2)
            for x in range(2)
        ]
        expected += float(sum(vals)) / len(vals)
    assert disentanglement(paired).item() == pytest.approx(expected / len(pairs))


def test_weighted_square_mean_matches_loop_and_zero_mask():
    paired = torch.randn(2, 2, 3, 2, 2, dtype=F64)
    m = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.0, 0.0]], dtype=F64)
    num, den = 0.0, 0.0
    for b, k, t, y, x in itertools.product(range(2), range(2), range(3), range(2), range(2)):
        num += float(paired[b, k, t, y, x] ** 2 * m[b, t])
        den += float(m[b, t])
    assert weighted_square_mean(paired, m).item() == pytest.approx(num / den)
    assert weighted_square_mean(paired, torch.zeros(2, 3, dtype=F64)).item() == 0
    with pytest.raises(ValueError, match="does not match"):
        weighted_square_mean(paired, torch.zeros(2, 4, dtype=F64))


def test_calibration_hand_values():
    assert calibration(torch.tensor(0.5, dtype=F64)).item() == pytest.approx(math.log(2) ** 2)
    assert calibration(torch.tensor(1.0, dtype=F64)).item() == 0
    assert calibration(torch.tensor(7.0, dtype=F64)).item() == 0


def test_total_variation_matches_loop():
    paired = torch.randn(2, 2, 4, 2, 3, dtype=F64)
    diffs = [
        float(paired[b, k, t + 1, y, x] - paired[b, k, t, y, x]) ** 2
        for b, k, t, y, x in itertools.product(range(2), range(2), range(3), range(2), range(3))
    ]
    assert total_variation(paired).item() == pytest.approx(sum(diffs) / len(diffs))
    assert total_variation(paired[:, :, :1]).item() == 0


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_nonnegativity_matches_volume_at_the_drawn_coordinates(heads):
    audio, image = _features(b=3, c=6)
    volume = sim_volume(audio.features, image.features, heads)  # (Ba, Bv, K, T, H, W)
    g = torch.Generator().manual_seed(5)
    got = nonnegativity(audio.features, image.features, heads, 50, generator=g)
    g = torch.Generator().manual_seed(5)
    coords = [torch.randint(n, (50,), generator=g) for n in (3, 3, heads, 5, 2, 3)]
    values = [float(volume[tuple(c[i] for c in coords)]) for i in range(50)]
    expected = sum(min(v, 0.0) ** 2 for v in values) / 50
    assert got.item() == pytest.approx(expected)
    assert len({int(a) != int(b) for a, b in zip(coords[0], coords[1])}) == 2  # negatives included


def test_nonnegativity_is_zero_for_nonnegative_features():
    audio, image = _features()
    got = nonnegativity(audio.features.abs(), image.features.abs(), 2, 250)
    assert got.item() == 0


def _full_loss_by_hand(cfg, audio, image, gamma, splice):
    s = gamma * torch.stack(
        [
            torch.stack(
                [
                    sum(
                        audio.mask[i, t]
                        * sim_volume(
                            audio.features[i : i + 1], image.features[j : j + 1], cfg.heads
                        )[0, 0, :, t].max()
                        for t in range(audio.features.shape[-1])
                    )
                    / audio.mask[i].sum().clamp_min(1e-6)
                    for j in range(audio.features.shape[0])
                ]
            )
            for i in range(audio.features.shape[0])
        ]
    )
    paired = paired_sim_volume(audio.features, image.features, cfg.heads)
    return {
        "a2v": _loop_infonce(s.tolist()),
        "v2a": _loop_infonce(s.T.tolist()),
        "dis": disentanglement(paired).item(),
        "splice": weighted_square_mean(paired, splice).item(),
        "silence": weighted_square_mean(paired, 1 - audio.mask).item(),
        "cal": calibration(gamma).item(),
        "tv": total_variation(paired).item(),
    }


def test_dense_av_loss_terms_and_weighted_total():
    cfg = DenseAVConfig.tiny()
    mask = torch.ones(4, 5, dtype=F64)
    mask[1, 3:] = 0
    mask[2, :] = 0
    audio, image = _features(mask=mask)
    splice = torch.zeros(4, 5, dtype=F64)
    splice[0, 1:3] = torch.tensor([0.5, 1.0], dtype=F64)
    gamma = torch.tensor(0.7, dtype=F64)
    terms = DenseAVLoss(cfg)(
        audio, image, gamma, splice, generator=torch.Generator().manual_seed(0)
    )
    expected = _full_loss_by_hand(cfg, audio, image, gamma, splice)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value), name
    total = (
        terms["a2v"]
        + terms["v2a"]
        + 0.05 * terms["dis"]
        + 0.01 * terms["splice"]
        + 0.01 * terms["silence"]
    )
    total = total + 0.1 * terms["cal"] + 0.01 * terms["nonneg"] + 0.01 * terms["tv"]
    assert terms["loss"].item() == pytest.approx(total.item())
    no_splice = DenseAVLoss(cfg)(audio, image, gamma)
    assert no_splice["splice"].item() == 0


def _spliced_tokens(b=4, t=5):
    splice = torch.zeros(b, t, dtype=F64)
    splice[0, 1:3] = torch.tensor([0.5, 1.0], dtype=F64)
    splice[3, 4] = 1.0
    return splice


def test_spliced_tokens_can_be_left_out_of_infonce_only():
    """splice_in_infonce=False: InfoNCE averages over the unspliced tokens (soft weights at the
    crossfade), while the splice and silence terms still see the clip's own mask."""
    audio, image = _features()
    splice = _spliced_tokens()
    gamma = torch.tensor(0.9, dtype=F64)
    default = DenseAVLoss(DenseAVConfig.tiny())
    left_out = DenseAVLoss(DenseAVConfig.tiny(splice_in_infonce=False))
    got = left_out(audio, image, gamma, splice)
    as_mask = default(
        AudioFeatures(audio.features, audio.mask * (1 - splice), audio.cls), image, gamma, splice
    )
    spliced = default(audio, image, gamma, splice)
    for name in ("a2v", "v2a"):
        assert got[name].item() == pytest.approx(as_mask[name].item()), name
        assert got[name].item() != pytest.approx(spliced[name].item()), name
    for name in ("splice", "silence", "dis", "tv"):
        assert got[name].item() == pytest.approx(spliced[name].item()), name
    assert left_out(audio, image, gamma)["a2v"].item() == pytest.approx(
        default(audio, image, gamma)["a2v"].item()
    )


def test_spliced_tokens_left_out_of_the_global_batch_too():
    """With several processes the gathered masks are each process's contrast_mask: the mean loss
    of two processes equals the single-process loss of the whole batch."""
    loss = DenseAVLoss(DenseAVConfig.tiny(splice_in_infonce=False))
    audio, image = _features()
    splice = _spliced_tokens()
    gamma = torch.tensor(1.3, dtype=F64)
    full = loss(audio, image, gamma, splice)
    gathered = AudioFeatures(audio.features, loss.contrast_mask(audio.mask, splice), audio.cls)
    parts = []
    for rank in range(2):
        rows = slice(2 * rank, 2 * rank + 2)
        parts.append(
            loss(
                AudioFeatures(audio.features[rows], audio.mask[rows], audio.cls[rows]),
                ImageFeatures(image.features[rows], image.cls[rows]),
                gamma,
                splice[rows],
                all_audio=gathered,
                all_image=image,
                offset=2 * rank,
            )
        )
    for name in ("a2v", "v2a"):
        assert ((parts[0][name] + parts[1][name]) / 2).item() == pytest.approx(full[name].item())


@pytest.mark.parametrize("aggregation", ["multihead", "avgpool", "cls", "maxspace"])
def test_global_batch_split_over_processes_equals_single_process(aggregation):
    """Two 'processes' with 2 local rows each: their mean loss and its gradients (gathered with
    gradients, averaged as DDP does) equal those of the global batch of 4."""
    cfg = DenseAVConfig.tiny(aggregation=aggregation)
    audio, image = _features()
    gamma = torch.tensor(1.3, dtype=F64)

    def leaves():
        return [
            t.clone().requires_grad_(True)
            for t in (audio.features, audio.cls, image.features, image.cls)
        ]

    ref = leaves()
    full = DenseAVLoss(cfg)(
        AudioFeatures(ref[0], audio.mask, ref[1]), ImageFeatures(ref[2], ref[3]), gamma
    )
    (full["a2v"] + full["v2a"]).backward()

    split = leaves()
    gathered_a = AudioFeatures(split[0], audio.mask, split[1])
    gathered_v = ImageFeatures(split[2], split[3])
    parts = []
    for rank in range(2):
        rows = slice(2 * rank, 2 * rank + 2)
        local_a = AudioFeatures(split[0][rows], audio.mask[rows], split[1][rows])
        local_v = ImageFeatures(split[2][rows], split[3][rows])
        parts.append(
            DenseAVLoss(cfg)(
                local_a, local_v, gamma, all_audio=gathered_a, all_image=gathered_v, offset=2 * rank
            )
        )
    for name in ("a2v", "v2a"):
        assert ((parts[0][name] + parts[1][name]) / 2).item() == pytest.approx(full[name].item()), (
            name
        )
    (sum(p["a2v"] + p["v2a"] for p in parts) / 2).backward()
    for got, want in zip(split, ref):
        torch.testing.assert_close(got.grad, want.grad)


def test_gathered_copies_without_grad_still_train_the_local_rows():
    cfg = DenseAVConfig.tiny()
    audio, image = _features()
    local = audio.features[:2].clone().requires_grad_(True)
    out = DenseAVLoss(cfg)(
        AudioFeatures(local, audio.mask[:2], audio.cls[:2]),
        ImageFeatures(image.features[:2], image.cls[:2]),
        torch.tensor(1.0, dtype=F64),
        all_audio=audio,
        all_image=image,
        offset=0,
    )
    out["loss"].backward()
    assert local.grad is not None and local.grad.abs().sum() > 0


def test_local_rows_must_fit_the_global_batch():
    cfg = DenseAVConfig.tiny()
    audio, image = _features()
    with pytest.raises(ValueError, match="do not fit"):
        DenseAVLoss(cfg)(
            audio, image, torch.tensor(1.0, dtype=F64), all_audio=audio, all_image=image, offset=2
        )


def test_gradcheck_of_the_regularisers():
    paired = torch.randn(2, 2, 3, 2, 2, dtype=F64, requires_grad=True)
    m = torch.tensor([[0.0, 0.5, 1.0], [1.0, 0.2, 0.0]], dtype=F64)
    assert torch.autograd.gradcheck(disentanglement, (paired,))
    assert torch.autograd.gradcheck(lambda p: weighted_square_mean(p, m), (paired,))
    assert torch.autograd.gradcheck(total_variation, (paired,))
    assert torch.autograd.gradcheck(infonce, (torch.randn(3, 3, dtype=F64, requires_grad=True),))
    gamma = torch.tensor(0.4, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(calibration, (gamma,))
    a = torch.randn(2, 4, 3, dtype=F64, requires_grad=True)
    v = torch.randn(2, 4, 2, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, v: nonnegativity(a, v, 2, 40, generator=torch.Generator().manual_seed(1)), (a, v)
    )


def test_gradcheck_of_the_full_loss():
    cfg = DenseAVConfig.tiny()
    audio, image = _features(b=2, c=4, t=3, h=2, w=1)
    a = audio.features.clone().requires_grad_(True)
    v = image.features.clone().requires_grad_(True)
    g = torch.tensor(1.5, dtype=F64, requires_grad=True)
    splice = torch.rand(2, 3, dtype=F64)

    def loss(a, v, g):
        out = DenseAVLoss(cfg)(
            AudioFeatures(a, audio.mask, audio.cls),
            ImageFeatures(v, image.cls),
            g,
            splice,
            generator=torch.Generator().manual_seed(2),
        )
        return out["loss"]

    assert torch.autograd.gradcheck(loss, (a, v, g))
