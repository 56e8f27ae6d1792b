"""The dataset index: a wids-style ``index.json`` rebuilt from the shards' stats records.

Layout of ``{dataset}/index.json``::

    {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "audioset",
     "shardlist": [{"url": "000000.tar", "nsamples": 500, "filesize": 81234432, "sha256": "..."}],
     "total_samples": 500, "total_bytes": 81234432, "num_shards": 1, "num_failures": 3}

Shard URLs are stored relative to the index (the dataset can be moved or copied to S3 as a
folder); :func:`load_index` resolves them. Only published shards (with a stats record) with at
least one sample are listed; empty shards still count towards ``num_failures``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from shards import storage

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
_STATS_SUFFIX = ".stats.json"


@dataclass(frozen=True)
class ShardEntry:
    url: str  # absolute: local path or s3:// URL
    num_samples: int
    num_bytes: int
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetIndex:
    """A loaded index: the dataset's shards and totals."""

    url: str  # the index.json URL
    name: str
    shards: list[ShardEntry] = field(default_factory=list)

    @property
    def total_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.num_bytes for s in self.shards)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.shards]


def build_index(out_url: str, name: str | None = None) -> dict:
    """Rebuild ``{out_url}/index.json`` from every ``*.stats.json`` there; return its content.

    Safe to run at any time (also while writers are still running: unfinished shards have no
    stats record yet and are left out). The index is published atomically.
    """
    entries = []
    num_failures = 0
    for entry_name in storage.listdir(out_url):
        if not entry_name.endswith(_STATS_SUFFIX):
            continue
        stats_url = storage.join(out_url, entry_name)
        try:
            stats = json.loads(storage.read_bytes(stats_url))
            shard = stats["shard"]
            count = int(stats["num_samples"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed stats record {stats_url}: {exc}") from exc
        num_failures += int(stats.get("num_failures", 0))
        if count > 0:
            entries.append(
                {
                    "url": shard,
                    "nsamples": count,
                    "filesize": int(stats.get("num_bytes", 0)),
                    "sha256": stats.get("sha256"),
                }
            )
    index = {
        "__kind__": "wids-shard-index-v1",
        "wids_version": 1,
        "name": name or storage.basename(out_url),
        "shardlist": entries,
        "total_samples": sum(e["nsamples"] for e in entries),
        "total_bytes": sum(e["filesize"] for e in entries),
        "num_shards": len(entries),
        "num_failures": num_failures,
    }
    index_url = storage.join(out_url, INDEX_NAME)
    storage.write_bytes(index_url, json.dumps(index, indent=1).encode("utf-8"))
    log.info("index %s: %d shards, %d samples", index_url, len(entries), index["total_samples"])
    return index


def load_index(url: str) -> DatasetIndex:
    """Load a dataset index from its ``index.json`` URL or from the dataset folder URL."""
    index_url = url if url.endswith(".json") else storage.join(url, INDEX_NAME)
    try:
        index = json.loads(storage.read_bytes(index_url))
        base = storage.parent(index_url)
        shards = [
            ShardEntry(
                url=e["url"]
                if "://" in e["url"] or e["url"].startswith("/")
                else storage.join(base, e["url"]),
                num_samples=int(e["nsamples"]),
                num_bytes=int(e.get("filesize", 0)),
                sha256=e.get("sha256"),
            )
            for e in index["shardlist"]
        ]
    except storage.StorageNotFound as exc:
        raise storage.StorageNotFound(
            f"no dataset index at {index_url}: run shards.index.build_index on the dataset folder"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed dataset index {index_url}: {exc}") from exc
    return DatasetIndex(
        url=index_url, name=index.get("name", storage.basename(base)), shards=shards
    )


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m shards.index",
        description="Rebuild a dataset's index.json from its shards' stats records.",
    )
    parser.add_argument("dataset", help="dataset folder: local path or s3://bucket/prefix")
    parser.add_argument("--name", default=None, help="dataset name (default: folder name)")
    args = parser.parse_args(argv)
    index = build_index(args.dataset, name=args.name)
    print(
        f"{storage.join(args.dataset, INDEX_NAME)}: {index['num_shards']} shards, "
        f"{index['total_samples']} samples, {index['num_failures']} recorded failures"
    )


if __name__ == "__main__":
    main()
