"""Negative audio splicing: crossfade length and shape, mask algebra, determinism."""

import math

import pytest
import torch

from trainer.splice import (
    DonorClips,
    Splice,
    apply_splices,
    crossfade_samples,
    draw_splices,
    raised_cosine_window,
    splice_negatives,
)

SR = 16000


@pytest.mark.parametrize(
    "seconds, fade_seconds",
    [(1.0, 0.5), (1.5, 0.5), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0), (0.6, 0.3)],
)
def test_crossfade_length_is_quarter_at_least_half_second_capped_at_half(seconds, fade_seconds):
    assert crossfade_samples(int(seconds * SR), SR) == int(fade_seconds * SR)


def test_raised_cosine_window_shape():
    w = raised_cosine_window(100, 20)
    assert w.shape == (100,)
    assert torch.all(w[20:80] == 1)
    ramp = w[:20]
    assert torch.all((ramp > 0) & (ramp < 1))
    assert torch.all(ramp[1:] > ramp[:-1])
    torch.testing.assert_close(w.flip(0), w)
    x = (torch.arange(20, dtype=torch.float64) + 0.5) / 20
    torch.testing.assert_close(ramp.double(), 0.5 - 0.5 * torch.cos(math.pi * x), rtol=0, atol=1e-6)
    # Mid-ramp both sounds weigh the same.
    torch.testing.assert_close(
        raised_cosine_window(10, 4)[:4] + raised_cosine_window(10, 4)[:4].flip(0), torch.ones(4)
    )


def _batch(b=4, n=10 * SR, seed=0):
    g = torch.Generator().manual_seed(seed)
    valid = torch.tensor([n, n // 2, n, int(2.5 * SR)][:b])
    audio = (torch.rand(b, n, generator=g) * 2 - 1) * (torch.arange(n) < valid.unsqueeze(1))
    return audio, valid


def test_drawn_splices_respect_the_ranges():
    _, valid = _batch()
    donor_valid = torch.tensor([10 * SR, 3 * SR, int(1.5 * SR)])
    for seed in range(20):
        splices = draw_splices(
            valid, donor_valid, torch.Generator().manual_seed(seed), SR, 1.0, 4.0
        )
        for i, sp in enumerate(splices):
            if sp is None:  # the piece would not fit inside the clip's own audio
                assert valid[i] <= min(4 * SR, int(donor_valid.max()))
                continue
            assert SR <= sp.length <= min(4 * SR, int(donor_valid[sp.donor]))
            assert 0 <= sp.src and sp.src + sp.length <= donor_valid[sp.donor]
            assert 0 <= sp.dst and sp.dst + sp.length < valid[i]  # inside the clip's own audio
    assert draw_splices(valid, torch.zeros(0), torch.Generator(), SR) == [None] * len(valid)


def test_max_fraction_caps_the_piece_at_a_share_of_the_clip():
    valid = torch.tensor([10 * SR, int(2.5 * SR), int(1.5 * SR)])
    donor_valid = torch.tensor([10 * SR])
    lengths = {i: set() for i in range(3)}
    for seed in range(30):
        g = torch.Generator().manual_seed(seed)
        for i, sp in enumerate(draw_splices(valid, donor_valid, g, SR, 1.0, 4.0, 0.4)):
            assert sp is not None  # a capped piece always fits inside the clip
            assert sp.length <= int(0.4 * valid[i]) and sp.dst + sp.length < valid[i]
            lengths[i].add(sp.length)
    assert max(lengths[0]) > 3 * SR  # 10 s clips: the 1-4 s range is untouched
    assert lengths[1] == {SR} and lengths[2] == {int(0.6 * SR)}  # short clips: cut to 40 %


def test_splice_probability_leaves_some_clips_whole_and_one_changes_nothing():
    valid = torch.full((400,), 10 * SR)
    donor_valid = torch.tensor([10 * SR, 5 * SR])

    def draw(seed, **kw):
        return draw_splices(valid, donor_valid, torch.Generator().manual_seed(seed), SR, **kw)

    # At 1 no coin is drawn: the same pieces as a run without the setting (old runs resume alike).
    assert draw(5, probability=1.0) == draw(5)
    assert draw(5, probability=0.0) == [None] * len(valid)
    half = draw(5, probability=0.5)
    assert half == draw(5, probability=0.5)  # a fixed seed gives a fixed choice
    assert 150 < sum(sp is not None for sp in half) < 250


def test_applied_splice_mixes_audio_and_masks_by_the_crossfade():
    audio, valid = _batch()
    n = audio.shape[1]
    donor_audio, _ = _batch(seed=1)
    # Clip 1 (5 s valid) gets 3 s of donor 0 starting 1 s before its padding begins.
    plan = [None, Splice(donor=0, src=1000, dst=4 * SR, length=3 * SR), None, None]
    out = apply_splices(audio, valid, plan, donor_audio, SR)
    fade = crossfade_samples(3 * SR, SR)
    assert fade == int(0.75 * SR)
    w = raised_cosine_window(3 * SR, fade)
    where = slice(4 * SR, 7 * SR)
    torch.testing.assert_close(
        out.audio[1, where], audio[1, where] * (1 - w) + donor_audio[0, 1000 : 1000 + 3 * SR] * w
    )
    assert torch.equal(out.audio[1, : 4 * SR], audio[1, : 4 * SR])
    assert torch.equal(out.audio[1, 7 * SR :], audio[1, 7 * SR :])
    assert torch.equal(out.audio[[0, 2, 3]], audio[[0, 2, 3]])
    # Negative mask: 0 on the clip's own audio, the fade over the piece, 1 on padding.
    t = torch.arange(n)
    own = (t < valid[1]).float()
    expected_neg = 1 - own
    expected_neg[where] = 1 - own[where] * (1 - w)
    torch.testing.assert_close(out.negative_mask[1], expected_neg, atol=1e-6, rtol=0)
    assert torch.all(out.negative_mask[1, 5 * SR :] == 1)  # padded silence counts as negative
    assert (
        torch.equal(out.splice_mask[1, where], w) and out.splice_mask[1].count_nonzero() == 3 * SR
    )
    assert out.splice_mask[[0, 2, 3]].count_nonzero() == 0
    expected_sample_mask = own.clone()
    expected_sample_mask[where] = 1  # the piece reaches into the padding: the encoder sees it
    assert torch.equal(out.sample_mask[1], expected_sample_mask)
    for i in (0, 2, 3):
        assert torch.equal(out.negative_mask[i], (t >= valid[i]).float())
    assert out.donors.tolist() == [-1, 0, -1, -1]


def test_splice_is_deterministic_for_a_seed():
    audio, valid = _batch()
    donors = DonorClips(*_batch(seed=1))
    a = splice_negatives(audio, valid, donors, torch.Generator().manual_seed(7), SR)
    b = splice_negatives(audio, valid, donors, torch.Generator().manual_seed(7), SR)
    c = splice_negatives(audio, valid, donors, torch.Generator().manual_seed(8), SR)
    assert torch.equal(a.audio, b.audio) and torch.equal(a.negative_mask, b.negative_mask)
    assert not torch.equal(a.negative_mask, c.negative_mask)


def test_pieces_come_from_the_donors_and_stay_inside_each_clip():
    audio, valid = _batch()
    donors = DonorClips(torch.full((2, audio.shape[1]), 0.25), torch.tensor([10 * SR, 10 * SR]))
    out = splice_negatives(audio, valid, donors, torch.Generator().manual_seed(3), SR, 1.0, 2.0)
    for i in range(len(valid)):
        inside = out.splice_mask[i] > 0
        assert inside.any()  # 1-2 s pieces fit in every clip (the shortest is 2.5 s)
        assert not inside[valid[i] :].any()
        w = out.splice_mask[i, inside]
        torch.testing.assert_close(out.audio[i, inside], audio[i, inside] * (1 - w) + 0.25 * w)
    assert torch.equal(out.sample_mask, (torch.arange(audio.shape[1]) < valid[:, None]).float())


def test_a_state_dict_round_trip_keeps_the_donors():
    donors = DonorClips(*_batch())
    again = DonorClips.from_state_dict(donors.state_dict())
    assert torch.equal(again.audio, donors.audio)
    assert torch.equal(again.valid_samples, donors.valid_samples)


def test_without_donors_only_padding_is_negative():
    audio, valid = _batch(b=2)
    out = apply_splices(audio, valid, [None, None], None, SR)
    assert out.donors.tolist() == [-1, -1]
    assert torch.equal(out.audio, audio)
    assert torch.equal(out.negative_mask[1], (torch.arange(audio.shape[1]) >= valid[1]).float())
    with pytest.raises(ValueError, match="donor_audio"):
        apply_splices(audio, valid, [Splice(0, 0, 0, 10), None], None, SR)
