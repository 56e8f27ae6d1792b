"""Small synthetic datasets in the real shard format, for tests, benchmarks and smoke runs.

The samples are noise audio and random-colour frames; what matters is that they go through the
real encoder, writer and index, so a reader cannot tell them from ingested data.
"""

from __future__ import annotations

import numpy as np

from shards.format import CLIP_SAMPLES, SAMPLE_RATE, encode_sample
from shards.index import build_index
from shards.writer import ShardWriter


def synthetic_sample(
    key: str,
    rng: np.random.Generator,
    source: str = "synthetic",
    num_frames: int = 1,
    frame_size: tuple[int, int] = (64, 64),
) -> dict[str, bytes]:
    """One encoded sample: noise audio of 6-10 s (so padding is exercised), blocky frames."""
    valid = int(rng.integers(6 * SAMPLE_RATE, CLIP_SAMPLES + 1))
    audio = (0.1 * rng.standard_normal(valid)).astype(np.float32)
    h, w = frame_size
    frames = [
        np.kron(
            rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8),
            np.ones((8, 8, 1), dtype=np.uint8),
        )
        for _ in range(num_frames)
    ]
    meta = {
        "source": source,
        "id": key,
        "clip_start": 0.0,
        "clip_duration": valid / SAMPLE_RATE,
        "frame_times": [i * 10.0 / num_frames for i in range(num_frames)],
        "producer": "shards.synthetic",
    }
    return encode_sample(key, audio, frames, meta)


def write_synthetic_dataset(
    out_url: str,
    num_shards: int,
    samples_per_shard: int | list[int],
    seed: int = 0,
    name: str = "synthetic",
    num_frames: int = 1,
    frame_size: tuple[int, int] = (64, 64),
) -> list[str]:
    """Write ``num_shards`` shards and the index to ``out_url``; return the keys in write order.

    Keys are ``{name}-{shard:04d}-{i:04d}``. ``samples_per_shard`` may vary per shard.
    """
    rng = np.random.default_rng(seed)
    counts = (
        samples_per_shard
        if isinstance(samples_per_shard, list)
        else [samples_per_shard] * num_shards
    )
    keys = []
    for shard_id, count in enumerate(counts[:num_shards]):
        with ShardWriter(out_url, shard_id, max_samples=max(count, 1)) as writer:
            for i in range(count):
                key = f"{name}-{shard_id:04d}-{i:04d}"
                writer.write(
                    synthetic_sample(
                        key, rng, source=name, num_frames=num_frames, frame_size=frame_size
                    )
                )
                keys.append(key)
    build_index(out_url, name=name)
    return keys
