"""Heatmap reductions, prompt windows, the model input geometry and per-head clip scores."""

import numpy as np
import pytest
import torch
from PIL import Image

from denseav.similarity import aggregate, paired_sim_volume
from evaluation.heatmaps import head_clip_scores, prompt_sample_mask, upsample, weighted_time_mean
from evaluation.media import resize_center_crop


def test_prompt_mask_pads_word_span_and_stops_at_valid_audio():
    mask = prompt_sample_mask(
        [(1.0, 1.5), None, (0.1, 0.3)],
        valid_samples=[40, 25, 40],
        num_samples=40,
        sample_rate=10,
        pad_seconds=0.2,
    )
    # Clip 0: samples 8..17 (0.8 s .. 1.7 s); clip 1: the 25 valid samples; clip 2: clamped at 0.
    assert mask[0].nonzero().flatten().tolist() == list(range(8, 17))
    assert mask[1].nonzero().flatten().tolist() == list(range(25))
    assert mask[2].nonzero().flatten().tolist() == list(range(5))


def test_prompt_mask_rejects_span_outside_audio():
    with pytest.raises(ValueError, match="clip 0: word span"):
        prompt_sample_mask([(5.0, 6.0)], valid_samples=[20], num_samples=20, sample_rate=10)


def test_weighted_time_mean_matches_loop():
    rng = torch.Generator().manual_seed(0)
    values = torch.randn(3, 2, 5, 4, 4, generator=rng)
    weights = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 1, 0, 1]], dtype=torch.float32)
    out = weighted_time_mean(values, weights)
    for b in range(3):
        chosen = weights[b].nonzero().flatten()
        torch.testing.assert_close(out[b], values[b][:, chosen].mean(1))
    # Also without a head axis.
    torch.testing.assert_close(weighted_time_mean(values[:, 0], weights), out[:, 0])
    with pytest.raises(ValueError, match="covers no audio token"):
        weighted_time_mean(values, torch.zeros(3, 5))


def test_max_over_heads_is_taken_per_token_before_the_time_average():
    volume = torch.zeros(1, 2, 2, 1, 1)
    volume[0, 0, 0] = 1.0  # head 0 fires at token 0
    volume[0, 1, 1] = 1.0  # head 1 fires at token 1
    weights = torch.ones(1, 2)
    assert weighted_time_mean(volume.amax(dim=1), weights).item() == 1.0
    assert weighted_time_mean(volume, weights).amax(dim=1).item() == 0.5


def test_head_clip_scores_is_eq2_without_the_head_max():
    rng = torch.Generator().manual_seed(1)
    audio, image = torch.randn(3, 8, 6, generator=rng), torch.randn(3, 8, 4, 5, generator=rng)
    mask = torch.tensor(
        [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.float32
    )
    scores = head_clip_scores(paired_sim_volume(audio, image, heads=2), mask)
    for k in range(2):
        block = slice(4 * k, 4 * (k + 1))
        full = aggregate(audio[:, block], image[:, block], heads=1, audio_mask=mask)
        torch.testing.assert_close(scores[:, k], torch.diagonal(full))


def test_upsample_is_bilinear_to_label_size():
    x = torch.arange(4.0).reshape(1, 2, 2)
    up = upsample(x, (4, 4))
    assert up.shape == (1, 4, 4)
    expected = torch.nn.functional.interpolate(
        x[None], size=(4, 4), mode="bilinear", align_corners=False
    )[0]
    torch.testing.assert_close(up, expected)
    assert upsample(torch.zeros(2, 3, 2, 2), 8).shape == (2, 3, 8, 8)


def test_resize_center_crop_geometry_is_shared_by_image_and_labels():
    # A 40 x 80 picture whose left, middle and right thirds differ; the centre crop keeps the middle.
    labels = np.zeros((40, 80), np.int32)
    labels[:, 20:60] = 1234  # an ADE id above 255 must survive
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255
    img = resize_center_crop(image, 20)
    lab = resize_center_crop(labels, 20, resample=Image.NEAREST)
    assert img.shape == (20, 20, 3) and lab.shape == (20, 20)
    assert set(np.unique(lab)) == {1234}
    assert img.min() > 200
    tall = resize_center_crop(np.zeros((90, 30), np.int32), 10, resample=Image.NEAREST)
    assert tall.shape == (10, 10)
