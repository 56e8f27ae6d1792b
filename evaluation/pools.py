"""Retrieval pools in which every pair of clips can be told apart by what they name.

A 100-way pool drawn at random from a small world (or from a corpus with few label sets) holds
pairs that no model can separate: two captions naming the same objects, or a caption naming a
car and a star beside a scene with a car, a star and a ball, which under DenseAV's max over
image positions scores as high as that scene's own caption. :func:`build_pool` copies a shards
dataset's clips whose named contents are pairwise incomparable into a new dataset, which
``python -m evaluation retrieval`` then measures (``python -m evaluation pool``).

What a clip names (:func:`named_content`): its AudioSet-style ``labels`` when it has any, else
the class words its caption says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from shards import reader, storage
from shards.index import INDEX_NAME, build_index, load_index
from shards.writer import ShardWriter


def named_content(meta: dict[str, Any], class_words: Sequence[str]) -> frozenset[str]:
    """What a clip names: its ``labels`` (AudioSet mids) if any, else the ``class_words`` its
    ``caption`` says as whole words (case and trailing punctuation ignored)."""
    if meta.get("labels"):
        return frozenset(meta["labels"])
    words = {w.strip(".,!?;:").lower() for w in str(meta.get("caption", "")).split()}
    return frozenset(name for name in class_words if name.lower() in words)


def incomparable_pool(contents: Sequence[frozenset[str]], size: int) -> list[int]:
    """Indices (ascending) of up to ``size`` clips whose named contents are pairwise incomparable.

    No kept clip names a subset of what another names (equal contents included). Clips naming
    more come first (a three-object scene excludes fewer others than a one-object one), in order
    within each size; clips naming nothing are left out.
    """
    kept: list[int] = []
    for i in sorted(range(len(contents)), key=lambda i: -len(contents[i])):
        if len(kept) == size:
            break
        c = contents[i]
        if c and not any(c <= contents[j] or contents[j] <= c for j in kept):
            kept.append(i)
    return sorted(kept)


def raw_samples(url: str) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__`` + encoded fields) of a shards dataset, in index order."""
    counters = reader.StreamCounters()
    items = ({"url": u} for u in load_index(url).urls)
    yield from reader.tar_samples(counters)(reader.open_shards(counters)(items))


def build_pool(
    src: str, dst: str, class_words: Sequence[str], size: int, items_per_shard: int = 100
) -> int:
    """Write a shards dataset ``dst`` of up to ``size`` clips of ``src`` whose named contents are
    pairwise incomparable (:func:`incomparable_pool`), in the order of ``src``; return how many.

    Reads ``src`` twice (contents, then the chosen clips) and never changes it.

    Raises:
        FileExistsError: ``dst`` already holds an index (a pool, or any other dataset).
        ValueError: no clip of ``src`` names anything.
    """
    target = storage.join(dst, INDEX_NAME)
    if storage.exists(target):
        raise FileExistsError(f"{target} exists: remove that dataset or choose another output")
    contents = [named_content(json.loads(raw["json"]), class_words) for raw in raw_samples(src)]
    chosen = set(incomparable_pool(contents, size))
    if not chosen:
        raise ValueError(
            f"{src}: none of its {len(contents)} clips has labels or a caption saying one of "
            f"the class words {', '.join(class_words) or '(none given)'}"
        )
    kept = (
        {k: v for k, v in raw.items() if k == "__key__" or not k.startswith("__")}
        for i, raw in enumerate(raw_samples(src))
        if i in chosen
    )
    for shard_id in range(-(-len(chosen) // items_per_shard)):
        with ShardWriter(dst, shard_id, max_samples=items_per_shard) as writer:
            for _, sample in zip(range(items_per_shard), kept):
                writer.write(sample)
    build_index(dst)
    return len(chosen)
