"""Streaming reader of one dataset: composable ``webdataset`` stages and a resumable stream.

One *pass* over a dataset, as seen by one worker of one process, is this pipeline::

    pass shard list (seeded permutation)  ->  split_by_node(rank, world_size)
      ->  split_by_worker(worker, num_workers)  ->  open_shards (local file or boto3 stream)
      ->  tar_file_expander -> group_by_keys (webdataset)  ->  shuffle (seeded buffer)
      ->  count_and_skip (position; fast-forward on resume)  ->  decode_samples (skip bad ones)

:class:`SourceStream` chains passes: one exact pass (evaluation) or endless passes (training,
each with a fresh permutation). Its position is ``(pass, count)``: the number of raw samples the
worker has taken from the shuffle buffer in that pass. The pipeline is a pure function of the
seed, rank, worker and pass, so restoring a position rebuilds the pass and drops ``count`` raw
samples *before decoding*; the stream then goes on exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from shards import storage
from shards.format import SampleError, decode_sample

log = logging.getLogger(__name__)

# Endless training gives up on a source whose passes keep yielding nothing (all shards broken).
MAX_EMPTY_PASSES = 20


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from several integers (independent streams for distinct tuples)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0])


@dataclass
class StreamCounters:
    """What a worker skipped: whole or partial shards that failed to read, undecodable samples."""

    shard_errors: int = 0
    sample_errors: int = 0
    current_url: str | None = None
    current_failed: bool = False

    def as_dict(self) -> dict[str, int]:
        return {"shard_errors": self.shard_errors, "sample_errors": self.sample_errors}


@dataclass
class Position:
    """A worker's place in one source: pass number and raw samples taken in that pass."""

    pass_index: int = 0
    count: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"pass": self.pass_index, "count": self.count}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Position:
        return cls(pass_index=int(d["pass"]), count=int(d["count"]))


# ------------------------------------------------------------------------------------ stages
def pass_shard_list(
    urls: Sequence[str],
    seed: int,
    pass_index: int,
    shuffle: bool,
    min_length: int = 0,
) -> wds.SimpleShardList:
    """The shards of one pass, as a webdataset source of ``{"url": ...}`` dicts.

    ``shuffle`` permutes them with a seed shared by all ranks and workers (so that the node and
    worker splits partition the pass). ``min_length`` repeats the list (training only) so that
    every one of that many workers gets at least one shard even when there are fewer shards.
    """
    order = list(urls)
    if shuffle:
        random.Random(derive_seed(seed, pass_index)).shuffle(order)
    if order and len(order) < min_length:
        order = order * -(-min_length // len(order))
    return wds.SimpleShardList(order)


def split_by_node(rank: int, world_size: int) -> Callable[[Iterable], Iterator]:
    """Keep every ``world_size``-th item starting at ``rank`` (explicit, not read from torch)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} out of range for world_size {world_size}")

    def stage(src: Iterable) -> Iterator:
        return itertools.islice(src, rank, None, world_size)

    return stage


def split_by_worker(worker: int, num_workers: int) -> Callable[[Iterable], Iterator]:
    """Keep every ``num_workers``-th item starting at ``worker``."""
    return split_by_node(worker, num_workers)


def open_shards(
    counters: StreamCounters,
    policy: storage.RetryPolicy = storage.DEFAULT_RETRY,
) -> Callable[[Iterable[dict]], Iterator[dict]]:
    """Open each shard (local file, or an S3 object streamed by the process's boto3 client).

    A missing shard or an unreachable endpoint is retried with backoff, then raises
    :class:`shards.storage.StorageError` naming the shard: that is a broken dataset or setup,
    not a bad sample, so the stream stops. Each stream is closed once it has been read.
    """

    def stage(src: Iterable[dict]) -> Iterator[dict]:
        for item in src:
            url = item["url"]
            counters.current_url, counters.current_failed = url, False
            stream = storage.open_read(url, policy=policy, retry_not_found=True)
            try:
                yield {"url": url, "stream": stream}
            finally:
                stream.close()

    return stage


def shard_error_handler(counters: StreamCounters) -> Callable[[Exception], bool]:
    """A webdataset handler: log and count a corrupt or truncated shard, then go on."""

    def handler(exn: Exception) -> bool:
        if not counters.current_failed:  # webdataset may report one damaged shard twice
            counters.current_failed = True
            counters.shard_errors += 1
            log.warning(
                "skipping the rest of shard %s (corrupt or truncated): %s",
                counters.current_url,
                exn.args[0] if exn.args else exn,
            )
        return True

    return handler


def tar_samples(counters: StreamCounters) -> Callable[[Iterable[dict]], Iterator[dict]]:
    """Opened tar streams -> raw samples ``{"__key__", "__url__", "flac": bytes, ...}``."""
    handler = shard_error_handler(counters)

    def stage(src: Iterable[dict]) -> Iterator[dict]:
        return group_by_keys(tar_file_expander(src, handler=handler), handler=handler)

    return stage


def count_and_skip(position: Position, skip: int) -> Callable[[Iterable], Iterator]:
    """Advance ``position.count`` for every raw sample; drop the first ``skip`` (fast-forward)."""

    def stage(src: Iterable) -> Iterator:
        for sample in src:
            position.count += 1
            if position.count > skip:
                yield sample

    return stage


def decode_samples(counters: StreamCounters) -> Callable[[Iterable[dict]], Iterator[dict]]:
    """Raw samples -> decoded samples (see :func:`shards.format.decode_sample`); bad ones are
    logged with shard and key, counted and skipped."""

    def stage(src: Iterable[dict]) -> Iterator[dict]:
        for raw in src:
            try:
                yield decode_sample(raw)
            except SampleError as exc:
                counters.sample_errors += 1
                log.warning("skipping sample in shard %s: %s", raw.get("__url__"), exc)

    return stage


# ------------------------------------------------------------------------------------ stream
@dataclass
class StreamConfig:
    """How one source is read by one worker of one process.

    Attributes:
        urls: shard URLs (local paths or ``s3://``), e.g. ``load_index(url).urls``.
        seed: base seed; shard order and sample shuffle derive from it, the source index, the
            pass, the rank and the worker.
        rank, world_size: this process and the number of processes (nodes x GPUs).
        worker, num_workers: this DataLoader worker and the number per process.
        resample: True: endless passes, each a fresh permutation (training); False: one pass
            (evaluation), every sample exactly once over all ranks and workers.
        shuffle: shuffle shard order and samples (buffer of ``shuffle_buffer`` raw samples).
        source_index: distinguishes the seeds of several mixed sources.
    """

    urls: Sequence[str]
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1
    resample: bool = True
    shuffle: bool = True
    shuffle_buffer: int = 256
    source_index: int = 0
    retry: storage.RetryPolicy = field(default_factory=lambda: storage.DEFAULT_RETRY)


class SourceStream:
    """Decoded samples of one source for one worker, resumable at :attr:`position`.

    Iterating yields decoded samples (dicts from :func:`shards.format.decode_sample`); after
    each one, :attr:`position` is the place right after it.
    """

    def __init__(
        self,
        config: StreamConfig,
        position: Position | None = None,
        counters: StreamCounters | None = None,
    ):
        if not config.urls:
            raise ValueError("a source needs at least one shard URL")
        self.config = config
        self.position = position or Position()
        self.counters = counters or StreamCounters()

    def pass_pipeline(self, pass_index: int, skip: int) -> wds.DataPipeline:
        """The webdataset pipeline of one pass; it updates :attr:`position` as it goes."""
        c = self.config
        global_workers = c.world_size * c.num_workers
        sample_seed = derive_seed(c.seed, c.source_index, pass_index, c.rank, c.worker)
        return wds.DataPipeline(
            pass_shard_list(
                c.urls,
                derive_seed(c.seed, c.source_index),
                pass_index,
                c.shuffle,
                min_length=global_workers if c.resample else 0,
            ),
            split_by_node(c.rank, c.world_size),
            split_by_worker(c.worker, c.num_workers),
            open_shards(self.counters, c.retry),
            tar_samples(self.counters),
            wds.shuffle(c.shuffle_buffer, initial=c.shuffle_buffer, rng=random.Random(sample_seed))
            if c.shuffle
            else None,
            count_and_skip(self.position, skip),
            decode_samples(self.counters),
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        empty_passes = 0
        while True:
            skip = self.position.count
            self.position.count = 0
            yield from self.pass_pipeline(self.position.pass_index, skip)
            if not self.config.resample:
                return
            empty_passes = empty_passes + 1 if self.position.count == 0 else 0
            if empty_passes >= MAX_EMPTY_PASSES:
                raise RuntimeError(
                    f"{empty_passes} passes in a row gave no readable sample for worker "
                    f"{self.config.worker} of rank {self.config.rank} "
                    f"(shards: {list(self.config.urls)[:3]}...)"
                )
            self.position = Position(self.position.pass_index + 1, 0)
            # The pipeline stages hold the old Position object; they are rebuilt per pass.
