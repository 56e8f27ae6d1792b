"""The streaming reader: splits, mixing, exact resume through DataLoader workers, broken data.

Datasets are tiny (64x64 frames) but go through the real writer, index, tar streaming and
decoding, on a local folder and on the session's SeaweedFS S3 server.
"""

import gc
import io
import json
import logging
import os
import tarfile
from collections import Counter

import pytest
import torch

from shards import storage
from shards.loader import (
    LoaderConfig,
    ShardLoader,
    build_eval_loader,
    build_train_loader,
)
from shards.mixing import batch_sources, exact_counts
from shards.synthetic import write_synthetic_dataset

FAST = storage.RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.05)


def _keys(batches):
    return [s["__key__"] for b in batches for s in b]


def _take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


@pytest.mark.parametrize("num_shards, counts", [(4, [3, 2, 4, 2]), (2, [4, 3])])
def test_eval_split_covers_every_sample_once(storage_root, num_shards, counts):
    """world_size 2 x 2 workers: every sample exactly once, also with fewer shards than the
    4 workers."""
    url = storage.join(storage_root, "ds")
    keys = write_synthetic_dataset(url, num_shards, counts, seed=1)
    seen = []
    for rank in range(2):
        loader = build_eval_loader(url, batch_size=2, rank=rank, world_size=2, num_workers=2)
        seen += _keys(loader)
    assert sorted(seen) == sorted(keys) and len(seen) == len(set(seen))


class _Finalised:
    """Appends the pid of the process that finalises it (a stand-in for a decoded video frame,
    whose finaliser joins codec threads that exist only in the process that made them)."""

    def __init__(self, log):
        self.log, self.cycle = log, self

    def __del__(self):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


def _collect(sample, rng):
    gc.collect()  # what a worker's allocations trigger sooner or later
    return sample


def test_workers_do_not_finalise_the_parents_cyclic_garbage(tmp_path):
    """Garbage in a reference cycle must be freed before the workers fork: a forked worker that
    frees a PyAV frame deadlocks on its codec threads (seen: make test hung here)."""
    url = str(tmp_path / "ds")
    write_synthetic_dataset(url, 2, [2, 2], seed=1)
    log = tmp_path / "finalised"
    gc.disable()  # the cycle stays uncollected until the loader starts
    try:
        _Finalised(log)
        loader = build_eval_loader(url, batch_size=2, num_workers=2, sample_transform=_collect)
        assert len(_keys(loader)) == 4
    finally:
        gc.enable()
    assert log.read_text().split() == [str(os.getpid())]


def test_eval_repeats_identically_and_shuffles_by_seed(tmp_path):
    url = str(tmp_path / "ds")
    keys = write_synthetic_dataset(url, 3, 4, seed=2)
    loader = build_eval_loader(url, batch_size=3)
    first = _keys(loader)
    assert first == keys and _keys(loader) == first  # each `for` loop is a full pass
    shuffled = _keys(build_eval_loader(url, batch_size=3, shuffle=True, seed=5))
    assert sorted(shuffled) == sorted(keys) and shuffled != keys
    assert _keys(build_eval_loader(url, batch_size=3, shuffle=True, seed=5)) == shuffled


def test_train_with_fewer_shards_than_workers(tmp_path):
    url = str(tmp_path / "one")
    keys = write_synthetic_dataset(url, 1, 3, seed=3)
    for rank in range(2):
        loader = build_train_loader(
            [url], batch_size=2, seed=0, rank=rank, world_size=2, num_workers=2
        )
        batches = _take(loader, 6)  # endless: passes repeat the single shard
        assert all(len(b) == 2 for b in batches)
        assert set(_keys(batches)) == set(keys)


def test_exact_mix_per_batch_and_weighted_draws(tmp_path):
    a = write_synthetic_dataset(str(tmp_path / "a"), 2, 5, seed=4, name="a")
    b = write_synthetic_dataset(str(tmp_path / "b"), 2, 5, seed=5, name="b")
    sources = [(str(tmp_path / "a"), 1, "a"), (str(tmp_path / "b"), 3, "b")]
    assert exact_counts([1, 3], 8) == [2, 6] and exact_counts([1, 1, 1], 8) == [3, 3, 2]

    exact = _take(build_train_loader(sources, batch_size=8, seed=1, num_workers=0), 6)
    for batch in exact:
        assert Counter(s["__source__"] for s in batch) == {"a": 2, "b": 6}
        assert all(s["__key__"] in (a if s["__source__"] == "a" else b) for s in batch)

    drawn = _take(
        build_train_loader(sources, batch_size=8, seed=1, num_workers=0, exact_mix=False), 4
    )
    assert [s["__source__"] for bt in drawn for s in bt] == [
        ["a", "b"][i]
        for bt in range(4)
        for i in batch_sources([0.25, 0.75], 8, False, seed=1, rank=0, worker=0, batch_index=bt)
    ]
    slots = [
        i
        for bt in range(2000)
        for i in batch_sources([1, 3], 8, False, seed=1, rank=0, worker=0, batch_index=bt)
    ]
    assert abs(slots.count(0) / len(slots) - 0.25) < 0.02  # 4 sigma of a binomial(16000, 1/4)
    per_batch = {Counter(batch_sources([1, 3], 8, False, 1, 0, 0, bt))[0] for bt in range(50)}
    assert len(per_batch) > 1  # independent draws: the split varies from batch to batch

    again = _take(build_train_loader(sources, batch_size=8, seed=1, num_workers=0), 6)
    other = _take(build_train_loader(sources, batch_size=8, seed=2, num_workers=0), 6)
    assert _keys(again) == _keys(exact) and _keys(other) != _keys(exact)


def _record_rng(sample, rng):
    # Both the given Generator and torch's global RNG (kornia-style augmentation) must replay.
    sample["draw"] = (float(rng.random()), float(torch.rand(())))
    return sample


@pytest.mark.parametrize("num_workers, stop", [(2, 5), (0, 4)])
def test_resume_equals_uninterrupted(storage_root, num_workers, stop):
    """Stop after `stop` batches, save the state through JSON, restore into a new loader: the
    following batches equal the uninterrupted run's (keys, order and transform randomness),
    across pass boundaries and with an odd stop so the next worker is not worker 0."""
    url_a = storage.join(storage_root, "a")
    url_b = storage.join(storage_root, "b")
    write_synthetic_dataset(url_a, 2, [5, 4], seed=6, name="a")
    write_synthetic_dataset(url_b, 3, [3, 3, 2], seed=7, name="b")

    def make():
        return build_train_loader(
            [(url_a, 0.5, "a"), (url_b, 0.5, "b")],
            batch_size=4,
            seed=11,
            rank=1,
            world_size=2,
            num_workers=num_workers,
            sample_transform=_record_rng,
            shuffle_buffer=4,
        )

    def signature(batches):
        return [[(s["__key__"], s["draw"]) for s in b] for b in batches]

    total = 10
    full = signature(_take(make(), total))
    first_loader = make()
    first = signature(_take(first_loader, stop))
    state = json.loads(json.dumps(first_loader.state_dict()))
    resumed_loader = make()
    resumed_loader.load_state_dict(state)
    rest = signature(_take(resumed_loader, total - stop))
    assert first + rest == full
    assert len({k for b in full for k, _ in b}) < total * 4  # the run did wrap around passes

    with pytest.raises(ValueError, match="num_workers"):
        build_train_loader(
            [(url_a, 0.5, "a"), (url_b, 0.5, "b")],
            batch_size=4,
            seed=11,
            rank=1,
            world_size=2,
            num_workers=3,
        ).load_state_dict(state)


def _corrupt_member(url, member, offset, data=None, truncate=False):
    """Overwrite bytes of one member's data, or cut the tar there."""
    raw = bytearray(storage.read_bytes(url))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tar:
        start = tar.getmember(member).offset_data + offset
    if truncate:
        raw = raw[:start]
    else:
        raw[start : start + len(data)] = data
    storage.write_bytes(url, bytes(raw))


def test_corrupt_shard_and_bad_sample_are_skipped_counted_logged(storage_root, caplog):
    url = storage.join(storage_root, "ds")
    keys = write_synthetic_dataset(url, 3, 4, seed=8, name="c")
    shard1, shard2 = storage.join(url, "000001.tar"), storage.join(url, "000002.tar")
    _corrupt_member(shard1, "c-0001-0002.flac", 1000, truncate=True)
    _corrupt_member(shard2, "c-0002-0001.flac", 0, data=b"XXXX")

    loader = build_eval_loader(url, batch_size=3)
    with caplog.at_level(logging.WARNING, logger="shards.reader"):
        seen = _keys(loader)
    lost = {"c-0001-0002", "c-0001-0003", "c-0002-0001"}
    assert seen == [k for k in keys if k not in lost]
    assert loader.stats == {"c": {"shard_errors": 1, "sample_errors": 1}}
    log = caplog.text
    assert "000001.tar" in log and "corrupt or truncated" in log
    assert "c-0002-0001" in log and "000002.tar" in log and "'flac'" in log


def test_errors_are_reported_through_worker_batches(tmp_path):
    url = str(tmp_path / "ds")
    write_synthetic_dataset(url, 2, 4, seed=9, name="c")
    _corrupt_member(str(tmp_path / "ds" / "000000.tar"), "c-0000-0001.json", 0, data=b"\x00{")
    loader = build_train_loader([url], batch_size=2, seed=0, num_workers=2)
    _take(loader, 8)  # two passes per worker
    assert loader.stats["c"]["sample_errors"] >= 1


def test_missing_shard_retries_then_fails_clearly(storage_root):
    url = storage.join(storage_root, "ds")
    write_synthetic_dataset(url, 2, 2, seed=10)
    storage.delete(storage.join(url, "000001.tar"))
    loader = ShardLoader(
        [url], LoaderConfig(batch_size=2, num_workers=0, resample=False, shuffle=False, retry=FAST)
    )
    with pytest.raises(storage.StorageNotFound, match=r"000001\.tar.*after 2 attempts"):
        _keys(loader)
