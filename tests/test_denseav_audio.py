"""Audio preparation: per-clip normalisation and token masks that match the real downsampling."""

import math

import pytest
import torch

from denseav.audio import conv_output_length, downsample_mask, min_input_length, normalize_waveform
from denseav.config import DenseAVConfig
from denseav.model import DenseAV


@pytest.fixture(scope="module")
def tiny_model() -> DenseAV:
    torch.manual_seed(0)
    return DenseAV(DenseAVConfig.tiny()).eval()


def test_normalize_waveform_uses_valid_samples_only():
    wave = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 4.0, 6.0, 6.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    out = normalize_waveform(wave, mask, eps=0.0)
    # Row 0: valid mean 2, population std sqrt(2/3); the padded sample becomes 0.
    s = math.sqrt(2 / 3)
    expected0 = torch.tensor([-1 / s, 0.0, 1 / s, 0.0])
    expected1 = torch.tensor([-1.0, -1.0, 1.0, 1.0])  # mean 5, std 1
    torch.testing.assert_close(out[0], expected0)
    torch.testing.assert_close(out[1], expected1)


def test_normalize_waveform_fully_masked_and_silent_rows_are_zero():
    wave = torch.tensor([[0.5, -0.5, 0.2], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 0, 0], [1, 1, 1]])
    out = normalize_waveform(wave, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.zeros_like(out))


def test_normalize_waveform_without_mask_is_whole_clip():
    torch.manual_seed(1)
    wave = torch.randn(3, 50) * 4 + 2
    out = normalize_waveform(wave, eps=0.0)
    torch.testing.assert_close(out.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(1, unbiased=False), torch.ones(3))


def test_conv_output_length_matches_formula_by_hand():
    # 400 -> (400-10)//5+1 = 79 -> (79-3)//3+1 = 26 -> (26-3)//3+1 = 8
    assert conv_output_length(400, [(10, 5), (3, 3), (3, 3)]) == 8
    assert conv_output_length(5, [(10, 5)]) == 0


def test_min_input_length_is_the_shortest_input_with_one_output():
    layers = [(10, 5), (3, 2), (3, 3), (3, 3)]
    shortest = min_input_length(layers)
    assert shortest == 100  # 100 -> 19 -> 9 -> 3 -> 1, while 99 -> 18 -> 8 -> 2 -> 0
    assert (
        conv_output_length(shortest, layers) == 1 and conv_output_length(shortest - 1, layers) == 0
    )


def test_too_short_or_misshaped_audio_is_a_clear_error(tiny_model):
    shortest = min_input_length(tiny_model.token_layers)
    assert tiny_model.encode_audio(torch.randn(1, shortest)).features.shape[-1] == 1
    with pytest.raises(ValueError, match="too short"):
        tiny_model.encode_audio(torch.randn(1, shortest - 1))
    with pytest.raises(ValueError, match="mono"):
        tiny_model.encode_audio(torch.randn(1, 2, 8000))
    with pytest.raises(ValueError, match="sample_mask"):
        tiny_model.encode_audio(torch.randn(1, 8000), torch.ones(1, 7999))


def test_downsample_mask_hand_worked():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
    # kernel 3 stride 2: windows [0:3]=1, [2:5]=2/3, [4:7]=0
    first = downsample_mask(mask, [(3, 2)])
    torch.testing.assert_close(first, torch.tensor([[1.0, 2 / 3, 0.0]]))
    # then kernel 2 stride 1: [(1 + 2/3)/2, (2/3 + 0)/2]
    torch.testing.assert_close(
        downsample_mask(mask, [(3, 2), (2, 1)]), torch.tensor([[5 / 6, 1 / 3]])
    )


def test_downsample_mask_of_ones_is_ones_and_too_short_is_an_error():
    torch.testing.assert_close(
        downsample_mask(torch.ones(2, 100), [(10, 5), (3, 3)]), torch.ones(2, 6)
    )
    with pytest.raises(ValueError, match="too short"):
        downsample_mask(torch.ones(1, 4), [(10, 5)])


@pytest.mark.parametrize("num_samples", [3201, 4799, 6403, 8001])
def test_token_mask_matches_actual_conv_output_lengths(tiny_model, num_samples):
    wave = torch.randn(2, num_samples)
    with torch.no_grad():
        frames = tiny_model.audio_backbone(input_values=wave).last_hidden_state
        out = tiny_model.encode_audio(wave)
    backbone_len = int(tiny_model.audio_backbone._get_feat_extract_output_lengths(num_samples))
    assert frames.shape[1] == backbone_len
    assert out.features.shape[-1] == tiny_model.num_tokens(num_samples)
    assert tiny_model.token_mask(torch.ones(2, num_samples)).shape == (2, out.features.shape[-1])
    assert out.mask.shape == (2, out.features.shape[-1])


def test_token_mask_of_half_valid_clip(tiny_model):
    n = 16000
    mask = torch.zeros(1, n)
    mask[:, : n // 2] = 1
    tokens = tiny_model.token_mask(mask)[0]
    assert tokens[0] == 1 and tokens[-1] == 0
    assert torch.all(tokens[1:] <= tokens[:-1])  # monotone across the border
    assert (tokens.sum() / tokens.numel() - 0.5).abs() < 0.1


def test_encode_audio_is_per_clip_normalised_and_ignores_padding(tiny_model):
    torch.manual_seed(2)
    wave = torch.randn(2, 16000)
    mask = torch.ones(2, 16000)
    mask[1, 8000:] = 0
    with torch.no_grad():
        ref = tiny_model.encode_audio(wave, mask)
        scaled = tiny_model.encode_audio(wave * 3.0 + 0.5, mask)
        noisy = wave.clone()
        noisy[1, 8000:] = torch.randn(8000) * 10
        padded = tiny_model.encode_audio(noisy, mask)
    torch.testing.assert_close(scaled.features, ref.features, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(padded.features, ref.features)
    assert ref.mask[0].min() == 1 and ref.mask[1, -1] == 0
