"""A fixed log-mel front end for waveform backbones (HuBERT / wav2vec2 style).

HuBERT's feature encoder starts with a learnable 1-d convolution over raw samples. Pretrained, it
is a fine filter bank; trained from scratch on a small corpus it learns slowly, and its per-clip
GroupNorm is dominated by the zero padding of short captions. ``LogMelFilterbank`` replaces that
first layer with a fixed short-time Fourier transform and mel filter bank of the *same* window
(kernel) and hop (stride), so every later layer, the token geometry and the sample-to-token masks
stay exactly as the backbone config describes them.

The log compression follows Whisper's: ``log10`` power, floored 8 decades below the clip's own
maximum, then mapped to roughly ``[-1, 1]``. The floor depends only on the loudest frame, so
zero padding (digital silence) does not change the features of the valid audio.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.audio_utils import mel_filter_bank

DYNAMIC_RANGE_DECADES = 8.0


class LogMelFilterbank(nn.Module):
    """``(B, 1, N)`` waveform -> ``(B, n_mels, T)`` log-mel frames, ``T = (N - window) // hop + 1``.

    Args:
        window: samples per frame (Hann window and FFT size).
        hop: samples between frame starts.
        n_mels: mel bands (the output channels).
        sample_rate: of the waveform, in Hz.
    """

    def __init__(self, window: int, hop: int, n_mels: int, sample_rate: int = 16000) -> None:
        super().__init__()
        self.window_length, self.hop, self.n_mels = window, hop, n_mels
        with warnings.catch_warnings():  # empty bands: the error below says what to change
            warnings.simplefilter("ignore", UserWarning)
            mel = mel_filter_bank(
                num_frequency_bins=window // 2 + 1,
                num_mel_filters=n_mels,
                min_frequency=0.0,
                max_frequency=sample_rate / 2,
                sampling_rate=sample_rate,
                norm="slaney",
                mel_scale="slaney",
            )
        if not (mel.sum(axis=0) > 0).all():
            raise ValueError(
                f"a log-mel front end of {n_mels} bands needs a longer window than {window} "
                f"samples (some bands would be empty): raise conv_kernel[0] or lower conv_dim[0]"
            )
        # Derived from the settings, never trained: kept out of the state dict.
        self.register_buffer("mel", torch.from_numpy(mel).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(window), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 1, N) -> (B, n_mels, T)``."""
        frames = waveform[:, 0].unfold(-1, self.window_length, self.hop) * self.window
        spectrum = torch.view_as_real(torch.fft.rfft(frames, dim=-1))
        power = spectrum.square().sum(dim=-1)  # (B, T, window // 2 + 1)
        log_mel = torch.log10((power @ self.mel).clamp_min(1e-10))  # (B, T, n_mels)
        floor = log_mel.amax(dim=(1, 2), keepdim=True) - DYNAMIC_RANGE_DECADES
        return ((torch.maximum(log_mel, floor) + 4.0) / 4.0).transpose(1, 2)


def install_log_mel_front_end(backbone: PreTrainedModel, sample_rate: int = 16000) -> None:
    """Replace the first convolution of ``backbone``'s feature encoder by a log-mel filter bank.

    The filter bank uses that layer's kernel as its window, its stride as its hop and its output
    channels (``config.conv_dim[0]``) as the number of mel bands. In place.
    """
    encoder = getattr(backbone, "feature_extractor", None)
    if encoder is None or not hasattr(encoder, "conv_layers"):
        raise ValueError(
            f"audio_front_end='log_mel' needs a HuBERT/wav2vec2-style backbone with a conv feature "
            f"encoder; {type(backbone).__name__} has none"
        )
    config = backbone.config
    encoder.conv_layers[0] = LogMelFilterbank(
        window=config.conv_kernel[0],
        hop=config.conv_stride[0],
        n_mels=config.conv_dim[0],
        sample_rate=sample_rate,
    )
