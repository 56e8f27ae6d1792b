"""Paired (image, audio) clips for retrieval and disentanglement, from either kind of data:

- a shards dataset (folder, ``s3://`` prefix, or its ``index.json``), read in one exact pass in
  file order through :func:`shards.loader.build_eval_loader`; the image is the clip's middle frame
  and the audio its valid (non-padded) samples;
- a prompted-segmentation folder (holding ``prompted_segmentation.csv``): each prompt's image and
  audio.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.datasets import load_prompted_set, read_image
from evaluation.media import load_audio
from shards.format import SampleError
from shards.index import load_index
from shards.loader import build_eval_loader


@dataclass
class Pair:
    """One clip: ``image (H, W, 3)`` uint8 and ``audio (N,)`` float32 16 kHz (valid part only)."""

    key: str
    image: np.ndarray
    audio: np.ndarray


def is_prompted_folder(data: str) -> bool:
    """True for a local folder in the prompted-segmentation format."""
    return (Path(data) / "prompted_segmentation.csv").is_file()


def _prompted_pairs(data: str) -> Iterator[Pair]:
    for p in load_prompted_set(data).prompts:
        yield Pair(
            key=f"row{p.row}", image=read_image(p.image_path), audio=load_audio(p.audio_path)
        )


def _shard_pairs(data: str, batch_size: int = 32) -> Iterator[Pair]:
    loader = build_eval_loader(data, batch_size=batch_size, num_workers=0, shuffle=False)
    for batch in loader:
        for sample in batch:
            frames, meta = sample["frames"], sample["meta"]
            if not frames:
                raise SampleError(sample["__key__"], "frames", f"no frame (in {sample['__url__']})")
            valid = int(meta.get("valid_samples", len(sample["audio"])))
            yield Pair(
                key=sample["__key__"], image=frames[len(frames) // 2], audio=sample["audio"][:valid]
            )


def count_pairs(data: str) -> int:
    """How many clips the data holds (from the CSV or the shards index, without decoding)."""
    if is_prompted_folder(data):
        return len(load_prompted_set(data, check_files=False))
    return load_index(data).total_samples


def iter_pairs(data: str, limit: int | None = None) -> Iterator[Pair]:
    """The first ``limit`` clips (all when None) of a shards dataset or a prompted folder."""
    source = _prompted_pairs(data) if is_prompted_folder(data) else _shard_pairs(data)
    for i, pair in enumerate(source):
        if limit is not None and i >= limit:
            return
        yield pair
