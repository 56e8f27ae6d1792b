"""Retrieval pools whose clips can be told apart (evaluation/pools.py, ``python -m evaluation pool``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.__main__ import main
from evaluation.pools import build_pool, incomparable_pool, named_content, raw_samples
from shards import storage
from shards.format import encode_sample
from shards.index import build_index, load_index
from shards.writer import ShardWriter

CLASSES = ["ball", "star", "box", "heart"]
CAPTIONS = ["a ball", "a star and a ball", "a ball and a star", "a box", "nothing", "a ball"]


def write_captions(url: str, captions: list[str], per_shard: int = 3) -> None:
    """A PlacesAudio-style shards dataset: one short clip per caption, ``per_shard`` a shard."""
    frame = np.zeros((8, 8, 3), np.uint8)
    for shard in range(-(-len(captions) // per_shard)):
        with ShardWriter(url, shard) as w:
            for n in range(shard * per_shard, min(len(captions), (shard + 1) * per_shard)):
                meta = {"source": "placesaudio", "caption": captions[n]}
                w.write(encode_sample(f"k{n}", np.zeros(1600, np.float32), [frame], meta))
    build_index(url)


def test_named_content_reads_labels_for_sound_and_class_words_for_speech():
    assert named_content({"labels": ["/t/b", "/t/a"]}, CLASSES) == {"/t/a", "/t/b"}
    caption = "There is a red Ball next to a star, and a ball."
    assert named_content({"caption": caption}, CLASSES) == {"ball", "star"}
    assert named_content({"caption": "a picture of boxes"}, CLASSES) == frozenset()


def test_incomparable_pool_keeps_no_content_inside_another_larger_first():
    contents = [frozenset(c) for c in ("a", "ab", "a", "", "ba", "bc", "c", "d", "ad", "e")]
    kept = incomparable_pool(contents, size=10)
    # "ab", "bc", "ad" (two names, in order), then of the singletons only "e" is in none of them.
    assert kept == [1, 5, 8, 9]
    chosen = [contents[i] for i in kept]
    assert not any(x <= y for x in chosen for y in chosen if x is not y)
    assert incomparable_pool(contents, size=2) == [1, 5]


def test_build_pool_writes_a_shards_dataset_of_incomparable_content(storage_root):
    src, dst = f"{storage_root}/src", f"{storage_root}/pool"
    write_captions(src, CAPTIONS)
    before = [s["__key__"] for s in raw_samples(src)]

    assert build_pool(src, dst, CLASSES, size=10) == 2
    kept = [json.loads(s["json"]) for s in raw_samples(dst)]
    assert [m["caption"] for m in kept] == ["a star and a ball", "a box"]
    assert load_index(dst).total_samples == 2
    assert [s["__key__"] for s in raw_samples(src)] == before  # the source is only read


def test_a_pool_larger_than_a_shard_spreads_over_several_in_source_order(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "pool")
    words = [f"w{i}" for i in range(7)]
    write_captions(src, [f"this is {w}" for w in words])
    assert build_pool(src, dst, words, size=100, items_per_shard=3) == 7
    index = load_index(dst)
    assert [s.num_samples for s in index.shards] == [3, 3, 1]
    assert [s["__key__"] for s in raw_samples(dst)] == [f"k{i}" for i in range(7)]


def test_build_pool_never_writes_over_an_existing_dataset(tmp_path):
    src = str(tmp_path / "src")
    write_captions(src, CAPTIONS)
    with pytest.raises(FileExistsError, match="index.json exists"):
        build_pool(src, src, CLASSES, size=10)
    assert load_index(src).total_samples == len(CAPTIONS)


def test_pool_command_builds_the_pool_and_names_what_is_wrong(tmp_path, capsys):
    src, dst = str(tmp_path / "src"), str(tmp_path / "pool")
    write_captions(src, CAPTIONS)

    args = ["pool", "--data", src, "--out", dst, "--size", "10"]
    with pytest.raises(SystemExit, match=r"none of its 6 clips .* \(none given\)"):
        main(args)  # no class words: no caption names anything
    assert not storage.exists(f"{dst}/index.json")

    assert main([*args, "--class-words", "ball, star,box"]) == 0
    assert "retrieval pool: 2 of at most 10 clips" in capsys.readouterr().out
    assert load_index(dst).total_samples == 2

    with pytest.raises(SystemExit, match=f"{dst}/index.json exists"):
        main([*args, "--class-words", "heart"])
