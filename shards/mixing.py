"""Weighted mixing of several sources into batches, deterministic per seed, rank, worker, batch.

Each batch's source order is a pure function of ``(seed, rank, worker, batch_index)``, so a
resumed worker needs only its batch counter (and each source's own position) to continue.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from shards.reader import derive_seed


def normalize_weights(weights: Sequence[float]) -> list[float]:
    """Weights -> proportions summing to 1 (every weight must be > 0)."""
    if not weights or any(not w > 0 for w in weights):
        raise ValueError(f"mixing weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def exact_counts(weights: Sequence[float], batch_size: int) -> list[int]:
    """Samples per source in a batch: ``round(w * B)``, fixed up (largest remainder) to sum to B.

    >>> exact_counts([0.5, 0.5], 8)
    [4, 4]
    """
    props = normalize_weights(weights)
    raw = [p * batch_size for p in props]
    counts = [int(np.floor(r + 0.5)) for r in raw]
    # Ties go to the earlier source: it keeps (or gets) the extra sample.
    while sum(counts) > batch_size:  # too many: take from the most over-rounded
        i = max(range(len(counts)), key=lambda j: (counts[j] - raw[j], j))
        counts[i] -= 1
    while sum(counts) < batch_size:
        i = max(range(len(counts)), key=lambda j: (raw[j] - counts[j], -j))
        counts[i] += 1
    return counts


def batch_sources(
    weights: Sequence[float],
    batch_size: int,
    exact: bool,
    seed: int,
    rank: int,
    worker: int,
    batch_index: int,
) -> list[int]:
    """Which source each of the ``batch_size`` slots of a batch draws from.

    ``exact``: exactly :func:`exact_counts` per source, in a shuffled order. Otherwise each slot
    draws its source independently with the given probabilities.
    """
    rng = np.random.default_rng(derive_seed(seed, rank, worker, batch_index, 0x6D6978))
    if exact:
        order = np.repeat(np.arange(len(weights)), exact_counts(weights, batch_size))
        return rng.permutation(order).tolist()
    return rng.choice(len(weights), size=batch_size, p=normalize_weights(weights)).tolist()


def iter_batch_sources(
    weights: Sequence[float],
    batch_size: int,
    exact: bool,
    seed: int,
    rank: int,
    worker: int,
    start_batch: int = 0,
) -> Iterator[list[int]]:
    """:func:`batch_sources` for batch ``start_batch``, ``start_batch + 1``, ..."""
    batch_index = start_batch
    while True:
        yield batch_sources(weights, batch_size, exact, seed, rank, worker, batch_index)
        batch_index += 1
