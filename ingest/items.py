"""Work items (one input each) and their deterministic assignment to output shards."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass
class Window:
    """A clip to cut from an input: `[start, end)` seconds, its sample key and own metadata."""

    start: float
    end: float
    key: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkItem:
    """One input of a corpus: a media file (and for PlacesAudio a still image) plus metadata.

    `windows` are the clips to cut (AudioSet segments of one video); None splits the whole
    input into consecutive clips, whose sample keys are `{key}-{index:04d}`. `meta` goes into
    every sample's JSON (id, url, caption, words, ...), updated by the window's own `meta`.
    """

    key: str
    source: str
    location: str
    windows: list[Window] | None = None
    image: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sample_keys(self) -> list[str]:
        """The keys its samples will have (split inputs: not known before decoding, so [])."""
        return [w.key for w in self.windows] if self.windows is not None else []


def safe_key(text: str) -> str:
    """`text` with every character a shard key may not hold replaced by '_'."""
    return _UNSAFE_KEY_CHARS.sub("_", text) or "_"


def hashed_key(text: str, length: int = 16) -> str:
    """A stable key derived from `text` (a URL or path): hex of its SHA-1."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def assign_shards(items: Sequence[WorkItem], items_per_shard: int) -> list[list[WorkItem]]:
    """Consecutive runs of `items_per_shard` items: shard i holds items [i*n, (i+1)*n).

    The same input gives the same shards; rows appended to an input only add shards at the end.
    """
    if items_per_shard < 1:
        raise ValueError(f"items_per_shard must be >= 1, got {items_per_shard}")
    return [list(items[i : i + items_per_shard]) for i in range(0, len(items), items_per_shard)]


def check_unique_keys(items: Sequence[WorkItem], where: str) -> None:
    """Stop with a message naming the first repeated key (repeats would clash in the dataset)."""
    seen: dict[str, int] = {}
    for row, item in enumerate(items):
        for key in {item.key, *item.sample_keys()}:
            if key in seen:
                raise ValueError(f"{where}: rows {seen[key]} and {row} both give key {key!r}")
            seen[key] = row


def fingerprint(items: Sequence[WorkItem]) -> str:
    """SHA-256 of the items' content: a finished shard is reused only for the same items."""
    text = json.dumps([i.to_dict() for i in items], sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
