"""Loading a trained model for evaluation and batching inputs the way it expects them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch

from denseav.model import AudioFeatures, DenseAV, ImageFeatures
from evaluation.media import resize_center_crop
from shards.format import CLIP_SAMPLES

T = TypeVar("T")


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when available, else the CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(directory: str | os.PathLike, device: torch.device | str = "cpu") -> DenseAV:
    """A ``DenseAV`` written by ``save_pretrained``, in eval mode (dropout off, full-resolution
    image features: the 2x2 training-time pooling is skipped)."""
    model = DenseAV.from_pretrained(directory, map_location=device)
    model.eval()
    return model


def model_image_size(model: DenseAV) -> int:
    """The square input size the image backbone was built for (224 for DINO ViT-S/8)."""
    return model.image_size


def image_batch(images: Sequence[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """Equal-size RGB uint8 ``(H, W, 3)`` arrays -> ``(B, 3, H, W)`` float in ``[0, 1]``."""
    stacked = torch.from_numpy(np.stack(images)).to(device)
    return stacked.permute(0, 3, 1, 2).float() / 255.0


def audio_batch(
    waves: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
    min_samples: int = CLIP_SAMPLES,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Zero-pad mono clips to the longest, and at least to ``min_samples``.

    The default pads to the 10 s of a training clip: the model sees prompts as it saw captions
    in training, and a clip's result does not depend on the other clips of its batch (unless
    one of them is longer than 10 s).

    Returns:
        ``(waveform (B, N), sample_mask (B, N) with 1 on real samples, valid lengths)``.
    """
    lengths = [int(w.shape[0]) for w in waves]
    n = max(max(lengths), min_samples)
    waveform = torch.zeros(len(waves), n)
    mask = torch.zeros(len(waves), n)
    for i, w in enumerate(waves):
        waveform[i, : lengths[i]] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        mask[i, : lengths[i]] = 1.0
    return waveform.to(device), mask.to(device), lengths


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def encode_pairs(
    model: DenseAV,
    images: Sequence[np.ndarray],
    waves: Sequence[np.ndarray],
    device: torch.device | str = "cpu",
) -> tuple[ImageFeatures, AudioFeatures]:
    """Encode raw RGB uint8 images (resized + centre-cropped to the model input) and mono 16 kHz
    clips (zero-padded to the longest, with the sample mask) in one batch."""
    size = model_image_size(model)
    pixels = image_batch([resize_center_crop(im, size) for im in images], device)
    waveform, sample_mask, _ = audio_batch(waves, device)
    return model.encode_image(pixels), model.encode_audio(waveform, sample_mask=sample_mask)
