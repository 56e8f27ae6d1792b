"""Audio augmentations: speed changes duration and pitch, noise scales with the clip, seeded."""

import numpy as np
import torch

from trainer.audio_augment import AudioAugment, augment_audio, change_speed
from trainer.augment import ImageAugment
from trainer.data import TrainSampleTransform


def _tone(freq: float, n: int, rate: int = 16000) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / rate).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate / x.shape[0])


def test_faster_playback_is_shorter_and_higher():
    fast = change_speed(_tone(500.0, 16000), 1.25)
    assert fast.shape == (12800,)
    assert abs(_peak_hz(fast) - 625.0) < 5


def test_augment_keeps_padding_out_and_is_a_function_of_the_generator():
    audio = np.zeros(32000, np.float32)
    audio[:8000] = _tone(300.0, 8000)
    cfg = AudioAugment(speed=0.2, noise=0.5)
    out, valid = augment_audio(audio, 8000, cfg, torch.Generator().manual_seed(3))
    again, _ = augment_audio(audio, 8000, cfg, torch.Generator().manual_seed(3))
    assert 8000 / 1.2 - 1 <= valid <= 8000 / 0.8 + 1 and out.shape == (valid,)
    np.testing.assert_array_equal(out, again)
    other, _ = augment_audio(audio, 8000, cfg, torch.Generator().manual_seed(4))
    assert other.shape != out.shape or not np.array_equal(other, out)
    # Noise is at most 0.5 x the clip's std (plus the resampling's small change).
    clean, _ = augment_audio(audio, 8000, AudioAugment(speed=0.0, noise=0.5), torch.Generator())
    assert float(np.std(clean - audio[:8000])) <= 0.5 * float(np.std(audio[:8000])) + 1e-6


def test_off_by_default_so_samples_pass_through():
    sample = {
        "__key__": "k",
        "frames": [np.zeros((8, 8, 3), np.uint8)],
        "audio": _tone(200.0, 16000),
        "meta": {"valid_samples": 12000},
    }
    out = TrainSampleTransform(ImageAugment(size=8))(sample, np.random.default_rng(0))
    assert out["valid_samples"] == 12000
    np.testing.assert_array_equal(out["audio"].numpy(), sample["audio"])
    aug = TrainSampleTransform(ImageAugment(size=8), AudioAugment(speed=0.1, noise=0.1))
    out = aug(sample, np.random.default_rng(0))
    assert out["audio"].shape[0] == out["valid_samples"] != 12000
