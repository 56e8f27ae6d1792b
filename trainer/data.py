"""Training data: the shards loader, per-sample augmentation in its workers, batch collation.

Pipeline per process (rank)::

    shards.loader.build_train_loader      mixed sources by weight (each batch split exactly),
        |                                 split over ranks and workers, shuffled, resumable;
        |                                 undecodable samples are skipped, never duplicated
    TrainSampleTransform (in the workers) one random frame -> the paper's image augmentations;
        |                                 optional audio speed and noise (trainer.audio_augment)
        |
    collate                               -> TrainBatch of tensors
        |
    trainer.splice (training process)     negative audio pieces from the previous micro-batch

The splice happens in the training process because it needs other clips' audio (the process's
previous micro-batch, saved in checkpoints); its randomness comes from a generator seeded by
(seed, rank, step, micro-batch), so it is exact on resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shards.format import CLIP_SAMPLES
from shards.loader import ShardLoader, Source, build_train_loader
from trainer.audio_augment import AudioAugment, augment_audio
from trainer.augment import ImageAugment, augment_image, pick_frame
from trainer.params import DataConfig


@dataclass
class TrainBatch:
    """A collated batch of ``B`` clips.

    Attributes:
        images: ``(B, 3, S, S)`` float in [0, 1], augmented.
        audio: ``(B, N)`` float 16 kHz waveforms, zero-padded.
        valid_samples: ``(B,)`` real (non-padded) samples per clip.
        keys, sources: sample keys and source names, for logs.
    """

    images: torch.Tensor
    audio: torch.Tensor
    valid_samples: torch.Tensor
    keys: list[str]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def valid_audio(sample: dict) -> tuple[np.ndarray, int]:
    """A decoded sample's ``(N,)`` float32 audio and how many of its samples are real (not padding)."""
    audio = np.asarray(sample["audio"], dtype=np.float32)
    return audio, min(int(sample["meta"].get("valid_samples", audio.shape[0])), audio.shape[0])


def dataset_sources(cfg: DataConfig) -> list[Source]:
    """The configured datasets as loader sources (URL, weight, name)."""
    return [Source(d.url, d.weight, d.name or None) for d in cfg.datasets]


class TrainSampleTransform:
    """``(decoded sample, rng) -> compact training sample``; runs in the loader's workers.

    A plain object (not a closure) so it pickles to worker processes under any start method.
    """

    def __init__(self, augment: ImageAugment, audio_augment: AudioAugment | None = None) -> None:
        self.augment = augment
        self.audio_augment = audio_augment or AudioAugment()

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        g = torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))
        frame = pick_frame(sample["frames"], g)
        audio, valid = valid_audio(sample)
        image = augment_image(frame, self.augment, g)
        if self.audio_augment.enabled:
            audio, valid = augment_audio(audio, valid, self.audio_augment, g)
        return {
            "__key__": sample["__key__"],
            "__source__": sample.get("__source__", ""),
            "image": image,
            "audio": torch.from_numpy(audio),
            "valid_samples": valid,
        }


def collate(samples: list[dict]) -> TrainBatch:
    """Stack transformed samples (see :class:`TrainSampleTransform`) into a :class:`TrainBatch`."""
    audio = torch.zeros(len(samples), CLIP_SAMPLES)
    for i, s in enumerate(samples):
        n = min(s["audio"].shape[0], CLIP_SAMPLES)
        audio[i, :n] = s["audio"][:n]
    return TrainBatch(
        images=torch.stack([s["image"] for s in samples]),
        audio=audio,
        valid_samples=torch.tensor([min(s["valid_samples"], CLIP_SAMPLES) for s in samples]),
        keys=[s["__key__"] for s in samples],
        sources=[s["__source__"] for s in samples],
    )


def image_augment(cfg: DataConfig) -> ImageAugment:
    return ImageAugment(
        size=cfg.image_size,
        scale=(cfg.crop_scale_min, cfg.crop_scale_max),
        hflip_p=cfg.hflip_p,
        jitter=cfg.color_jitter,
        jitter_p=cfg.color_jitter_p,
        grayscale_p=cfg.grayscale_p,
    )


def build_loader(cfg: DataConfig, seed: int, rank: int, world_size: int) -> ShardLoader:
    """This rank's endless, resumable stream of batches (lists of transformed samples)."""
    return build_train_loader(
        sources=dataset_sources(cfg),
        batch_size=cfg.batch_size,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=cfg.num_workers,
        sample_transform=TrainSampleTransform(
            image_augment(cfg), AudioAugment(speed=cfg.audio_speed, noise=cfg.audio_noise)
        ),
        exact_mix=True,
        shuffle_buffer=cfg.shuffle_buffer,
    )
