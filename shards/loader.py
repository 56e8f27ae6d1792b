"""Loaders for training and evaluation: mixed, batched, sharded over ranks and workers, resumable.

Entry points::

    loader = build_train_loader(
        sources=[("s3://bucket/audioset", 0.5, "audioset"), ("s3://bucket/places", 0.5, "places")],
        batch_size=16, seed=0, rank=rank, world_size=world_size, num_workers=2,
        sample_transform=transform)          # transform(sample, rng) -> sample, runs in workers
    for batch in loader:                     # list of `batch_size` samples (dicts)
        ...
        ckpt["loader"] = loader.state_dict() # this rank's position (after the last batch taken)
    loader.load_state_dict(ckpt["loader"])   # the next batch is exactly the one that would
                                             # have come next, same order, same samples

Batches are built inside the DataLoader workers. Each carries its worker's position; the loader
(in the training process) remembers the position of the last batch it handed out from every
worker and which worker is next. On resume every worker rebuilds its sources at that position
(re-reading, not decoding, the samples of its current pass), and the worker order is rotated so
that DataLoader's round-robin starts with the worker that was next.
"""

from __future__ import annotations

import copy
import gc
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shards import storage
from shards.index import load_index
from shards.mixing import iter_batch_sources, normalize_weights
from shards.reader import (
    Position,
    SourceStream,
    StreamConfig,
    StreamCounters,
    derive_seed,
)

log = logging.getLogger(__name__)

STATE_VERSION = 1

SampleTransform = Callable[[dict, np.random.Generator], dict]


@dataclass(frozen=True)
class Source:
    """A dataset to read: its folder (or ``index.json``) URL, mixing weight and name."""

    url: str
    weight: float = 1.0
    name: str | None = None


SourceSpec = str | Source | Sequence[Any]


@dataclass
class LoaderConfig:
    """Settings of a :class:`ShardLoader` (see :func:`build_train_loader` for their meaning)."""

    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    num_workers: int = 2
    resample: bool = True
    shuffle: bool = True
    shuffle_buffer: int = 256
    exact_mix: bool = True
    prefetch_factor: int = 2
    retry: storage.RetryPolicy = field(default_factory=lambda: storage.DEFAULT_RETRY)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} out of range for world_size {self.world_size}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def logical_workers(self) -> int:
        """Streams per process: one per DataLoader worker, or one in-process."""
        return max(1, self.num_workers)


@dataclass(frozen=True)
class ResolvedSource:
    name: str
    urls: tuple[str, ...]
    weight: float
    num_samples: int


def resolve_sources(specs: Sequence[SourceSpec]) -> list[ResolvedSource]:
    """Load each source's index. A spec is a URL, ``(url, weight)``, ``(url, weight, name)`` or
    a :class:`Source`; weights are normalised; names default to the index's name."""
    if isinstance(specs, (str, Source)):
        specs = [specs]
    if not specs:
        raise ValueError("need at least one source")
    parsed = []
    for spec in specs:
        if isinstance(spec, str):
            spec = Source(spec)
        elif not isinstance(spec, Source):
            spec = Source(*spec)
        parsed.append(spec)
    weights = normalize_weights([s.weight for s in parsed])
    resolved = []
    for spec, weight in zip(parsed, weights):
        index = load_index(spec.url)
        if not index.shards:
            raise ValueError(f"dataset {index.url} has no shards with samples")
        resolved.append(
            ResolvedSource(spec.name or index.name, tuple(index.urls), weight, index.total_samples)
        )
    names = [s.name for s in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}; pass a name per source")
    return resolved


class MixedBatches(IterableDataset):
    """The worker side: yields ``(batch, worker_state)``; used through :class:`ShardLoader`."""

    def __init__(
        self,
        sources: Sequence[ResolvedSource],
        config: LoaderConfig,
        sample_transform: SampleTransform | None,
        state: dict | None,
        rotation: int,
    ):
        super().__init__()
        self.sources = list(sources)
        self.config = config
        self.sample_transform = sample_transform
        self.state = state
        self.rotation = rotation

    def __iter__(self) -> Iterator[tuple[list[dict], dict]]:
        c = self.config
        info = get_worker_info()
        physical = info.id if info is not None else 0
        worker = (physical + self.rotation) % c.logical_workers
        saved = (self.state or {}).get("workers", [None] * c.logical_workers)[worker] or {}
        positions = saved.get("sources") or [None] * len(self.sources)
        errors = saved.get("errors") or [None] * len(self.sources)
        streams = [
            SourceStream(
                StreamConfig(
                    urls=src.urls,
                    seed=c.seed,
                    rank=c.rank,
                    world_size=c.world_size,
                    worker=worker,
                    num_workers=c.logical_workers,
                    resample=c.resample,
                    shuffle=c.shuffle,
                    shuffle_buffer=c.shuffle_buffer,
                    source_index=i,
                    retry=c.retry,
                ),
                Position.from_dict(positions[i]) if positions[i] else None,
                StreamCounters(**errors[i]) if errors[i] else None,
            )
            for i, src in enumerate(self.sources)
        ]
        iterators = [iter(s) for s in streams]
        batch_index = int(saved.get("batch", 0))
        orders = iter_batch_sources(
            [s.weight for s in self.sources],
            c.batch_size,
            c.exact_mix,
            c.seed,
            c.rank,
            worker,
            start_batch=batch_index,
        )
        for order in orders:
            batch, exhausted = [], False
            for slot, source in enumerate(order):
                try:
                    sample = next(iterators[source])
                except StopIteration:
                    exhausted = True
                    break
                sample["__source__"] = self.sources[source].name
                if self.sample_transform is not None:
                    sample = self._transform(
                        sample, derive_seed(c.seed, c.rank, worker, batch_index, slot)
                    )
                batch.append(sample)
            batch_index += 1
            if batch:
                yield (
                    batch,
                    {
                        "worker": worker,
                        "batch": batch_index,
                        "sources": [s.position.as_dict() for s in streams],
                        "errors": [s.counters.as_dict() for s in streams],
                    },
                )
            if exhausted:
                return

    def _transform(self, sample: dict, seed: int) -> dict:
        # torch's global RNG is seeded per sample too (for torch-based augmentation such as
        # kornia), and restored afterwards so the caller's RNG stream is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed % (1 << 63))
            return self.sample_transform(sample, np.random.default_rng(seed))


def _as_is(item: Any) -> Any:
    """DataLoader would turn numpy arrays into tensors; batches stay lists of samples."""
    return item


class ShardLoader:
    """Iterable of batches (lists of sample dicts) with ``state_dict`` / ``load_state_dict``.

    Training (``resample=True``) iterates forever; every ``for`` loop continues where the last
    batch handed out left off. Evaluation (``resample=False``) yields one exact pass over the
    data (over all ranks together) and starts again from the beginning after a completed pass.
    """

    def __init__(
        self,
        sources: Sequence[SourceSpec],
        config: LoaderConfig,
        sample_transform: SampleTransform | None = None,
    ):
        self.config = config
        self.sources = resolve_sources(sources)
        self.sample_transform = sample_transform
        self._state = self._initial_state()
        # Skip counts as last reported by each worker; kept when an evaluation pass completes.
        self._errors: list[list[dict] | None] = [None] * config.logical_workers

    def _initial_state(self) -> dict:
        c = self.config
        return {
            "version": STATE_VERSION,
            "sources": [s.name for s in self.sources],
            "seed": c.seed,
            "rank": c.rank,
            "world_size": c.world_size,
            "num_workers": c.num_workers,
            "batch_size": c.batch_size,
            "resample": c.resample,
            "batches": 0,
            "next_worker": 0,
            "workers": [None] * c.logical_workers,
        }

    def __iter__(self) -> Iterator[list[dict]]:
        c = self.config
        dataset = MixedBatches(
            self.sources,
            c,
            self.sample_transform,
            copy.deepcopy(self._state),
            rotation=self._state["next_worker"],
        )
        if c.num_workers == 0:
            batches: Any = iter(dataset)
        else:
            # Free the cyclic garbage here, before the workers fork: a worker that frees an
            # inherited PyAV frame waits forever on codec threads that exist only in this process.
            gc.collect()
            batches = iter(
                DataLoader(
                    dataset,
                    batch_size=None,
                    num_workers=c.num_workers,
                    prefetch_factor=c.prefetch_factor,
                    persistent_workers=False,
                    collate_fn=_as_is,
                )
            )
        for batch, worker_state in batches:
            worker = worker_state["worker"]
            self._state["workers"][worker] = worker_state
            self._errors[worker] = worker_state["errors"]
            self._state["next_worker"] = (worker + 1) % c.logical_workers
            self._state["batches"] += 1
            yield batch
        if not c.resample:
            self._state = self._initial_state()

    def state_dict(self) -> dict:
        """This rank's position: JSON-serialisable; save one per rank."""
        return copy.deepcopy(self._state)

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a loader with the same sources,
        seed, batch size, rank, world size and number of workers)."""
        expected = self._initial_state()
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"loader state version {state.get('version')} is not {STATE_VERSION}")
        for key in (
            "sources",
            "seed",
            "rank",
            "world_size",
            "num_workers",
            "batch_size",
            "resample",
        ):
            if state.get(key) != expected[key]:
                raise ValueError(
                    f"loader state was saved with {key}={state.get(key)!r}, this "
                    f"loader has {key}={expected[key]!r}: exact resume needs them "
                    f"equal"
                )
        self._state = copy.deepcopy(state)
        self._errors = [(w or {}).get("errors") for w in self._state["workers"]]

    @property
    def stats(self) -> dict[str, dict[str, int]]:
        """Per source: damaged shards and undecodable samples skipped, as reported with the
        batches handed out (training: since the start; evaluation: in the current or last
        pass)."""
        out = {s.name: {"shard_errors": 0, "sample_errors": 0} for s in self.sources}
        for worker_errors in self._errors:
            for source, errors in zip(self.sources, worker_errors or []):
                for k, v in errors.items():
                    out[source.name][k] += v
        return out


def build_train_loader(
    sources: Sequence[SourceSpec],
    batch_size: int,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 2,
    sample_transform: SampleTransform | None = None,
    exact_mix: bool = True,
    shuffle_buffer: int = 256,
) -> ShardLoader:
    """An endless, shuffled, mixed training stream for one rank.

    Args:
        sources: datasets with weights, e.g. ``[(url_a, 0.5, "audioset"), (url_p, 0.5, "places")]``
            (a URL alone has weight 1; equal weights mix 50/50).
        batch_size: samples per batch on this rank.
        seed: every random choice (shard order, shuffle, mixing, ``sample_transform``'s rng)
            derives from it, the rank and the worker.
        rank, world_size: this process and the number of processes.
        num_workers: DataLoader worker processes (0: read in this process).
        sample_transform: ``f(sample, rng) -> sample`` run in the workers on each decoded sample
            with its own ``np.random.Generator`` (and torch's global RNG seeded per sample).
        exact_mix: every batch has exactly ``round(w * batch_size)`` samples of each source;
            False draws each slot's source independently.
        shuffle_buffer: raw samples held per worker and source for shuffling.
    """
    return ShardLoader(
        sources,
        LoaderConfig(
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            num_workers=num_workers,
            resample=True,
            shuffle=True,
            shuffle_buffer=shuffle_buffer,
            exact_mix=exact_mix,
        ),
        sample_transform,
    )


def build_eval_loader(
    source: SourceSpec,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    sample_transform: SampleTransform | None = None,
) -> ShardLoader:
    """One exact pass over a dataset: over all ranks and workers, every sample exactly once.

    With several workers or ranks the batches of different workers interleave, and each
    worker's last batch may be short.
    """
    return ShardLoader(
        [source],
        LoaderConfig(
            batch_size=batch_size,
            seed=seed,
            rank=rank,
            world_size=world_size,
            num_workers=num_workers,
            resample=False,
            shuffle=shuffle,
        ),
        sample_transform,
    )
