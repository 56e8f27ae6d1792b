"""The log-mel front end: same geometry as the layer it replaces, a real spectrum, padding-proof."""

import math

import numpy as np
import pytest
import torch

from denseav import DenseAV, DenseAVConfig
from denseav.front_end import LogMelFilterbank


def _tone(freq: float, seconds: float = 1.0, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return torch.sin(2 * math.pi * freq * t)


def test_frames_match_the_replaced_convolution_and_a_tone_lands_in_its_mel_band():
    bank = LogMelFilterbank(window=400, hop=160, n_mels=40)
    low, high = bank(_tone(300.0)[None, None]), bank(_tone(4000.0)[None, None])
    assert low.shape == (1, 40, (16000 - 400) // 160 + 1)
    # The loudest band of a pure tone is the band whose centre is nearest to it.
    peak_low, peak_high = (int(x[0].mean(dim=1).argmax()) for x in (low, high))
    centres = torch.from_numpy(np.argmax(bank.mel.numpy(), axis=0)) * 16000 / 400
    assert abs(float(centres[peak_low]) - 300) < 100
    assert abs(float(centres[peak_high]) - 4000) < 400
    assert torch.isfinite(low).all()


def test_zero_padding_does_not_change_the_frames_of_valid_audio():
    bank = LogMelFilterbank(window=400, hop=160, n_mels=32)
    speech = torch.randn(1, 1, 8000) * torch.linspace(0.1, 1.0, 8000)
    padded = torch.cat([speech, torch.zeros(1, 1, 24000)], dim=-1)
    inside = (8000 - 400) // 160 + 1
    out = bank(padded)
    torch.testing.assert_close(out[..., :inside], bank(speech))
    # Frames reaching into the padding use the clip's statistics; frames of padding alone are 0.
    assert torch.isfinite(out).all()
    assert (out[..., 8000 // 160 + 1 :] == 0).all()


def test_frames_are_standardised_and_loudness_is_removed():
    bank = LogMelFilterbank(window=400, hop=160, n_mels=32)
    noise = torch.randn(1, 1, 16000) * torch.linspace(0.2, 1.0, 16000)
    frames = bank(noise)
    torch.testing.assert_close(frames.mean(), torch.tensor(0.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(frames.std(unbiased=False), torch.tensor(1.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(bank(noise * 30.0), frames, atol=1e-4, rtol=0)


def _tiny_with_a_5ms_window(**changes) -> DenseAVConfig:
    audio = dict(DenseAVConfig.tiny().audio_backbone_config)
    audio.update(conv_kernel=[80, 4, 4], conv_stride=[20, 4, 4])
    return DenseAVConfig.tiny(audio_backbone_config=audio, **changes)


def test_log_mel_model_keeps_token_geometry_and_trains_the_rest(tmp_path):
    torch.manual_seed(0)
    waveform_model = DenseAV(_tiny_with_a_5ms_window())
    model = DenseAV(_tiny_with_a_5ms_window(audio_front_end="log_mel"))
    first = model.audio_backbone.feature_extractor.conv_layers[0]
    assert isinstance(first, LogMelFilterbank)
    assert model.token_layers == waveform_model.token_layers
    wave = torch.randn(2, 32000)
    features = model.encode_audio(wave).features
    assert features.shape[-1] == model.num_tokens(32000)
    model.set_phase(2)
    model.encode_audio(wave).features.square().mean().backward()
    second = model.audio_backbone.feature_extractor.conv_layers[1].conv.weight
    assert second.grad is not None and second.grad.abs().sum() > 0
    # The filter bank holds no weights: a saved model rebuilds it from the config.
    model.eval()
    loaded = DenseAV.from_pretrained(model.save_pretrained(tmp_path / "m"))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode_audio(wave).features, model.encode_audio(wave).features
        )


def test_unknown_front_end_and_too_short_window_are_named():
    with pytest.raises(ValueError, match="audio_front_end"):
        DenseAVConfig.tiny(audio_front_end="mfcc")
    with pytest.raises(ValueError, match="conv_kernel"):  # tiny's 10-sample first kernel
        DenseAV(DenseAVConfig.tiny(audio_front_end="log_mel"))


def test_zero_counts_per_frame_match_counting_each_frame():
    bank = LogMelFilterbank(window=400, hop=160, n_mels=32)
    signal = torch.randn(3, 4000)
    signal[0, 1000:1500] = 0
    signal[1, 3000:] = 0
    signal[2, ::7] = 0
    frames = signal.unfold(-1, 400, 160)
    expected = (frames == 0).sum(dim=-1, keepdim=True)
    torch.testing.assert_close(bank.zeros_per_frame(signal, frames.shape[1]), expected)
