"""Settings of an ingest job: media, download, sharding and Ray options, with working defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.fetch import FetchOptions
from ingest.media import MediaOptions

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class RayOptions:
    """Where shard tasks run and what each may use.

    Without `address` a private local Ray instance is started with `num_cpus` CPUs, `memory`
    bytes of reservable memory and an object store of `object_store_memory` bytes (Ray's own
    defaults claim most of the machine). Usage statistics and the dashboard are off.
    """

    address: str | None = None  # e.g. "127.0.0.2:6379" for an existing cluster
    num_cpus: int | None = None  # local instance only; None: all cores
    memory: int = 4 * GIB  # local instance only
    object_store_memory: int = 256 * MIB  # local instance only
    concurrency: int | None = None  # most shard tasks in flight; None: as many as CPUs allow
    task_cpus: float = 1.0  # CPUs reserved per shard task
    task_memory: int | None = None  # bytes reserved per shard task (Ray schedules by it)
    task_retries: int = 3  # re-runs of a shard task whose worker died or raised
    temp_dir: str | None = None  # local instance only: Ray's session folder

    def __post_init__(self) -> None:
        if self.task_cpus <= 0 or self.task_retries < 0:
            raise ValueError(f"task_cpus must be > 0 and task_retries >= 0, got {self}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")


@dataclass(frozen=True)
class JobOptions:
    """One ingest run: write the shards of a planned corpus to `output` (a folder or s3://)."""

    output: str
    items_per_shard: int = 100
    retry_failed: bool = False  # redo the failed samples of finished shards
    media: MediaOptions = field(default_factory=MediaOptions)
    fetch: FetchOptions = field(default_factory=FetchOptions)
    ray: RayOptions = field(default_factory=RayOptions)
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("an output folder or s3:// URL is required")
        if self.items_per_shard < 1:
            raise ValueError(f"items_per_shard must be >= 1, got {self.items_per_shard}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
