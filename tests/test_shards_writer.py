"""The atomic shard writer and the index, on a local folder and on a real S3 server."""

import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap

import numpy as np
import pytest
import webdataset as wds

from shards import storage
from shards.format import decode_sample
from shards.index import build_index, load_index
from shards.synthetic import synthetic_sample, write_synthetic_dataset
from shards.writer import ShardFullError, ShardWriter, shard_is_done


def _read_tar(url):
    members = {}
    with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(url))) as tar:
        names = tar.getnames()
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    return names, members


def test_readback_equals_written(storage_root):
    rng = np.random.default_rng(0)
    samples = [synthetic_sample(f"k{i}", rng, num_frames=3) for i in range(4)]
    with ShardWriter(storage_root, 3) as w:
        for s in samples:
            w.write(s)
        w.record_failure("k_bad", "no audio stream")
    assert shard_is_done(storage_root, 3) and not shard_is_done(storage_root, 2)

    names, members = _read_tar(storage.join(storage_root, "000003.tar"))
    # Each sample's members are contiguous, in write order.
    assert names[:5] == ["k0.flac", "k0.frame0.jpg", "k0.frame1.jpg", "k0.frame2.jpg", "k0.json"]
    assert len(names) == 4 * 5
    for s in samples:
        for field, data in s.items():
            if field != "__key__":
                assert members[f"{s['__key__']}.{field}"] == data
        back = decode_sample(
            {
                "__key__": s["__key__"],
                **{f: members[f"{s['__key__']}.{f}"] for f in s if f != "__key__"},
            }
        )
        want = decode_sample(s)
        np.testing.assert_array_equal(back["audio"], want["audio"])
        for a, b in zip(back["frames"], want["frames"]):
            np.testing.assert_array_equal(a, b)

    stats = json.loads(storage.read_bytes(storage.join(storage_root, "000003.stats.json")))
    tar_bytes = storage.read_bytes(storage.join(storage_root, "000003.tar"))
    assert stats["num_samples"] == 4 and stats["keys"] == ["k0", "k1", "k2", "k3"]
    assert stats["num_bytes"] == len(tar_bytes)
    assert stats["sha256"] == hashlib.sha256(tar_bytes).hexdigest()
    assert stats["failures"] == [{"key": "k_bad", "reason": "no audio stream"}]


def test_error_inside_block_publishes_nothing(storage_root):
    rng = np.random.default_rng(1)
    with pytest.raises(RuntimeError, match="boom"), ShardWriter(storage_root, 0) as w:
        w.write(synthetic_sample("a", rng))
        raise RuntimeError("boom")
    assert storage.listdir(storage_root) == []


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from shards.synthetic import synthetic_sample
    from shards.writer import ShardWriter
    rng = np.random.default_rng(0)
    with ShardWriter(sys.argv[1], 5) as w:
        for i in range(3):
            w.write(synthetic_sample(f"s{i}", rng))
        print("WRITING", flush=True)
        time.sleep(600)
""")


def test_killed_writer_publishes_nothing_and_rerun_completes(storage_root):
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, storage_root], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "WRITING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert storage.listdir(storage_root) == []  # no shard, no stats (local temp is hidden)
    temp_dir = tempfile.gettempdir() if storage.is_s3(storage_root) else storage_root
    dead_temps = os.path.join(temp_dir, f".000005.tar.tmp-{proc.pid}-*")
    assert len(glob.glob(dead_temps)) == 1
    assert not shard_is_done(storage_root, 5)
    assert build_index(storage_root)["num_shards"] == 0

    rng = np.random.default_rng(0)
    with ShardWriter(storage_root, 5) as w:
        for i in range(3):
            w.write(synthetic_sample(f"s{i}", rng))
    assert shard_is_done(storage_root, 5)
    assert storage.listdir(storage_root) == ["000005.stats.json", "000005.tar", "index.json"]
    assert glob.glob(dead_temps) == []  # the rerun removed the dead writer's temporary file


def test_size_limits(tmp_path):
    rng = np.random.default_rng(2)
    samples = [synthetic_sample(f"k{i}", rng) for i in range(4)]
    with ShardWriter(str(tmp_path), 0, max_samples=2) as w:
        w.write(samples[0])
        w.write(samples[1])
        assert w.is_full and not w.fits(samples[2])
        with pytest.raises(ShardFullError, match="max_samples=2"):
            w.write(samples[2])
    one = sum(len(v) + 1024 for k, v in samples[0].items() if k != "__key__")
    limit = 2 * one + 10240 * 2
    with ShardWriter(str(tmp_path), 1, max_bytes=limit) as w:
        written = 0
        for s in samples:
            if not w.fits(s):
                with pytest.raises(ShardFullError, match="max_bytes"):
                    w.write(s)
                break
            w.write(s)
            written += 1
    assert 1 <= written < 4
    assert os.path.getsize(tmp_path / "000001.tar") <= limit
    with pytest.raises(ValueError, match="duplicate"), ShardWriter(str(tmp_path), 2) as w:
        w.write(samples[0])
        w.write(samples[0])


def test_index_counts(storage_root):
    keys = write_synthetic_dataset(storage_root, 3, [4, 2, 5], seed=3, name="toy")
    with ShardWriter(storage_root, 3) as w:  # a shard whose every item failed
        w.record_failure("x1", "download failed")
        w.record_failure("x2", "no audio")
    index = build_index(storage_root)
    assert index["total_samples"] == 11 == len(keys)
    assert [e["nsamples"] for e in index["shardlist"]] == [4, 2, 5]
    assert index["num_shards"] == 3 and index["num_failures"] == 2
    assert index["__kind__"] == "wids-shard-index-v1"

    loaded = load_index(storage_root)
    assert loaded.total_samples == 11 and loaded.name == storage.basename(storage_root)
    assert loaded.urls == [storage.join(storage_root, f"{i:06d}.tar") for i in range(3)]
    assert all(storage.exists(u) for u in loaded.urls)
    assert load_index(storage.join(storage_root, "index.json")).urls == loaded.urls
    with pytest.raises(FileNotFoundError, match="build_index"):
        load_index(storage.join(storage_root, "elsewhere"))


def test_plain_webdataset_and_tar_read_a_shard(tmp_path):
    keys = write_synthetic_dataset(str(tmp_path), 1, 5, seed=4, num_frames=2)
    shard = str(tmp_path / "000000.tar")
    listing = subprocess.run(["tar", "-tf", shard], capture_output=True, text=True, check=True)
    assert listing.stdout.split()[:4] == [
        f"{keys[0]}.flac",
        f"{keys[0]}.frame0.jpg",
        f"{keys[0]}.frame1.jpg",
        f"{keys[0]}.json",
    ]
    extracted = tmp_path / "x"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", shard, "-C", str(extracted)], check=True)
    meta = json.loads((extracted / f"{keys[1]}.json").read_text())
    assert meta["num_frames"] == 2

    samples = list(wds.WebDataset(shard, shardshuffle=False).decode("rgb8"))
    assert [s["__key__"] for s in samples] == keys
    assert samples[0]["frame1.jpg"].shape == (64, 64, 3)
    assert samples[0]["json"]["source"] == "synthetic"
