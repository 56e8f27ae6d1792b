"""A fixed log-mel front end for waveform backbones (HuBERT / wav2vec2 style).

HuBERT's feature encoder starts with a learnable 1-d convolution over raw samples. Pretrained, it
is a fine filter bank; trained from scratch on a small corpus it learns slowly, and its per-clip
GroupNorm is dominated by the zero padding of short captions. ``LogMelFilterbank`` replaces that
first layer with a fixed short-time Fourier transform and mel filter bank of the *same* window
(kernel) and hop (stride), so every later layer, the token geometry and the sample-to-token masks
stay exactly as the backbone config describes them.

Each clip's log-mel frames are then standardised (zero mean and unit variance over all its frames
and bands): loudness and recording level are removed, the spectral shape is kept. On the toy
world's captions a supervised probe (which of the 12 nouns a caption names, toy HuBERT, batches
of 16 clips) reached a held-out mAP of 0.91 after 250 steps with this front end, against 0.33
after 300 with the learnable waveform layer and 0.25 after 200 with Whisper's fixed log
compression, whose constant floor for padding frames and offset scale swamped short captions.
Standardising each band on its own (speech recognisers' cepstral mean and variance
normalisation) reached 0.95 after 300, no faster, and would discard the spectral shape that
tells steady sounds apart.

Zero padding is not part of a clip: the statistics use only frames that hold no exact zero sample
(after ``normalize_waveform`` only padding is exactly zero), and frames that are all zeros come
out as zeros, so padding a clip does not change the features of its audio.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.audio_utils import mel_filter_bank

LOG_FLOOR = 1e-10  # mel power below this is digital silence
EPS = 1e-5


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
        # Derived from the settings, never trained: kept out of the state dict. Each frequency's
        # row twice, so that the projection sums the (re^2, im^2) pair of every bin.
        self.register_buffer(
            "mel_per_component",
            torch.from_numpy(mel).float().repeat_interleave(2, dim=0),
            persistent=False,
        )
        self.register_buffer("window", torch.hann_window(window), persistent=False)

    @property
    def mel(self) -> torch.Tensor:
        """``(window // 2 + 1, n_mels)`` mel filter bank: weight of each frequency bin per band."""
        return self.mel_per_component[::2]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 1, N) -> (B, n_mels, T)``, standardised over the clip's frames and bands."""
        signal = waveform[:, 0]
        frames = signal.unfold(-1, self.window_length, self.hop)  # (B, T, window)
        spectrum = torch.view_as_real(torch.fft.rfft(frames * self.window, dim=-1))
        power_pairs = spectrum.square().flatten(-2)  # (B, T, 2 * (window // 2 + 1))
        log_mel = torch.log10((power_pairs @ self.mel_per_component).clamp_min(LOG_FLOOR))
        zeros = self.zeros_per_frame(signal, frames.shape[1]).to(log_mel.dtype)  # (B, T, 1)
        sounding = (zeros < self.window_length).to(log_mel.dtype)
        inside = (zeros == 0).to(log_mel.dtype)
        # A clip too short (or too sparse) for a whole frame without zeros: every sounding frame.
        weight = torch.where(inside.sum(dim=1, keepdim=True) > 0, inside, sounding)
        count = (weight.sum(dim=1, keepdim=True) * self.n_mels).clamp_min(1.0)
        mean = (log_mel * weight).sum(dim=(1, 2), keepdim=True) / count
        var = ((log_mel - mean).square() * weight).sum(dim=(1, 2), keepdim=True) / count
        normed = (log_mel - mean) * torch.rsqrt(var + EPS) * sounding
        return normed.transpose(1, 2)

    def zeros_per_frame(self, signal: torch.Tensor, frames: int) -> torch.Tensor:
        """``(B, N)`` samples -> ``(B, T, 1)`` exact-zero samples in each frame, in O(N)."""
        seen = torch.nn.functional.pad((signal == 0).cumsum(dim=-1), (1, 0))  # (B, N + 1)
        starts = torch.arange(frames, device=signal.device) * self.hop
        return (seen[:, starts + self.window_length] - seen[:, starts]).unsqueeze(-1)


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
