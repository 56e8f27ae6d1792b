"""The atomic shard writer.

``ShardWriter(out_url, shard_id)`` builds ``{shard_id:06d}.tar`` in a local temporary file and, on a
clean exit of its ``with`` block, publishes it, then writes ``{shard_id:06d}.stats.json`` (sample
count, bytes, sha256, keys, the failures the caller recorded). The stats record is written last
and is the shard's success marker: a shard without it is not done and is redone by a rerun; an
exception (or a killed process) inside the block publishes nothing.

Size limits: the writer never exceeds ``max_samples`` / ``max_bytes``. :meth:`ShardWriter.write`
raises :class:`ShardFullError` for a sample that does not fit (the first sample of a shard always
fits), and the caller plans its shards so that this does not happen (e.g. a fixed number of input
items per ``shard_id``; the byte limit is a safety rail). Shard ids therefore map one to one to
the caller's work units, which keeps reruns idempotent.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shards import storage
from shards.format import FORMAT_VERSION, frame_fields, validate_sample

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11

DEFAULT_MAX_SAMPLES = 1000
DEFAULT_MAX_BYTES = 1 << 30
_TAR_BLOCK = 512


class ShardFullError(RuntimeError):
    """Adding the sample would exceed the shard's size limits."""


def shard_name(shard_id: int) -> str:
    return f"{shard_id:06d}.tar"


def stats_name(shard_id: int) -> str:
    return f"{shard_id:06d}.stats.json"


def shard_is_done(out_url: str, shard_id: int) -> bool:
    """Whether shard ``shard_id`` was published completely (its stats record exists)."""
    return storage.exists(storage.join(out_url, stats_name(shard_id)))


def _member_size(data_len: int) -> int:
    return _TAR_BLOCK + -(-data_len // _TAR_BLOCK) * _TAR_BLOCK


def _tar_file_size(content_bytes: int) -> int:
    """tarfile pads the archive to whole records on close."""
    return -(-content_bytes // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def _ordered_fields(sample: Mapping[str, Any]) -> list[str]:
    return ["flac", *frame_fields(sample), "json"]


class ShardWriter:
    """Write one shard atomically to a local folder or ``s3://bucket/prefix``.

    Example::

        with ShardWriter("s3://bucket/audioset", 7, max_samples=500) as w:
            for item in items:
                try:
                    w.write(encode_sample(item.key, audio, frames, meta))
                except SampleError as e:
                    w.record_failure(item.key, str(e))
        # now s3://bucket/audioset/000007.tar and 000007.stats.json exist

    Args:
        out_url: dataset folder (local path or ``s3://bucket/prefix``).
        shard_id: non-negative integer; the shard is named ``{shard_id:06d}.tar``.
        max_samples: most samples in this shard.
        max_bytes: most bytes of the tar file (headers and padding included).
        extra_stats: JSON-serialisable fields added to the stats record (e.g. the ingest job id).
    """

    def __init__(
        self,
        out_url: str,
        shard_id: int,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        extra_stats: Mapping[str, Any] | None = None,
    ):
        if not isinstance(shard_id, int) or shard_id < 0:
            raise ValueError(f"shard_id must be a non-negative int, got {shard_id!r}")
        if max_samples < 1 or max_bytes < 1:
            raise ValueError(f"limits must be positive, got {max_samples=} {max_bytes=}")
        self.out_url = out_url
        self.shard_id = shard_id
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.extra_stats = dict(extra_stats or {})
        self.keys: list[str] = []
        self.failures: list[dict[str, str]] = []
        self.num_bytes = 2 * _TAR_BLOCK  # end-of-archive marker
        self._tar: tarfile.TarFile | None = None
        self._tmp_path: str | None = None
        self._seen: set[str] = set()

    @property
    def url(self) -> str:
        return storage.join(self.out_url, shard_name(self.shard_id))

    @property
    def stats_url(self) -> str:
        return storage.join(self.out_url, stats_name(self.shard_id))

    def __enter__(self) -> Self:
        if storage.is_s3(self.out_url):
            folder = tempfile.gettempdir()  # built locally, then uploaded in one piece
        else:
            folder = storage.local_path(self.out_url)  # beside the target: publishing is a rename
            os.makedirs(folder, exist_ok=True)
        self._remove_stale_temps(folder)
        fd, self._tmp_path = tempfile.mkstemp(
            prefix=f".{shard_name(self.shard_id)}.tmp-{os.getpid()}-", dir=folder
        )
        self._tar = tarfile.open(fileobj=os.fdopen(fd, "wb"), mode="w", format=tarfile.USTAR_FORMAT)
        return self

    def _remove_stale_temps(self, folder: str) -> None:
        """Delete temporaries of this shard left by writers that died (their pid is gone)."""
        for path in glob.glob(os.path.join(folder, f".{shard_name(self.shard_id)}.tmp-*")):
            pid = os.path.basename(path).split(".tmp-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                try:
                    os.unlink(path)
                except FileNotFoundError:  # another rerun cleaned it first
                    pass

    def fits(self, sample: Mapping[str, Any]) -> bool:
        """Whether ``sample`` can be added without exceeding the limits."""
        if not self.keys:
            return True
        size = sum(_member_size(len(sample[f])) for f in _ordered_fields(sample) if f in sample)
        return len(self.keys) < self.max_samples and _tar_file_size(self.num_bytes + size) <= (
            self.max_bytes
        )

    @property
    def is_full(self) -> bool:
        """No further sample fits (count limit reached)."""
        return (
            len(self.keys) >= self.max_samples or _tar_file_size(self.num_bytes) >= self.max_bytes
        )

    def write(self, sample: Mapping[str, Any]) -> None:
        """Append one encoded sample (from :func:`shards.format.encode_sample`).

        Raises:
            SampleError: the sample breaks the contract (names key and field).
            ShardFullError: the sample would exceed ``max_samples`` or ``max_bytes``.
            ValueError: the key was already written to this shard.
        """
        if self._tar is None:
            raise RuntimeError("use ShardWriter inside a `with` block")
        validate_sample(sample)
        key = sample["__key__"]
        if key in self._seen:
            raise ValueError(f"shard {self.url}: duplicate sample key {key!r}")
        if not self.fits(sample):
            raise ShardFullError(
                f"shard {self.url}: sample {key!r} would exceed max_samples={self.max_samples} "
                f"or max_bytes={self.max_bytes} (now {len(self.keys)} samples, "
                f"{self.num_bytes} bytes)"
            )
        for field in _ordered_fields(sample):
            data = bytes(sample[field])
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0  # identical input gives byte-identical shards
            self._tar.addfile(info, io.BytesIO(data))
            self.num_bytes += _member_size(len(data))
        self.keys.append(key)
        self._seen.add(key)

    def record_failure(self, key: str, reason: str) -> None:
        """Note an input item that produced no sample; it goes into the stats record."""
        self.failures.append({"key": str(key), "reason": str(reason)})

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tar is not None and self._tmp_path is not None
        fileobj = self._tar.fileobj
        try:
            self._tar.close()
            fileobj.close()
            if exc_type is None:
                self._publish()
        finally:
            self._tar = None
            if os.path.exists(self._tmp_path):
                os.unlink(self._tmp_path)

    def _publish(self) -> None:
        assert self._tmp_path is not None
        digest = hashlib.sha256()
        with open(self._tmp_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        size = os.path.getsize(self._tmp_path)
        storage.upload_file(self._tmp_path, self.url)
        stats = {
            "format_version": FORMAT_VERSION,
            "shard_id": self.shard_id,
            "shard": shard_name(self.shard_id),
            "num_samples": len(self.keys),
            "num_bytes": size,
            "sha256": digest.hexdigest(),
            "keys": self.keys,
            "num_failures": len(self.failures),
            "failures": self.failures,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **self.extra_stats,
        }
        storage.write_bytes(self.stats_url, json.dumps(stats, indent=1).encode("utf-8"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
