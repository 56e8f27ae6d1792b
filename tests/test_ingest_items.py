"""Work planning and reporting without Ray: shard assignment, keys, failure grouping."""

from __future__ import annotations

import pytest

from ingest.config import JobOptions
from ingest.items import Window, WorkItem, assign_shards, check_unique_keys, fingerprint, safe_key
from ingest.media import MediaOptions
from ingest.report import error_pattern, reason_code, summarize
from ingest.sources.audioset import plan as plan_audioset
from ingest.sources.audioset import segment_key
from ingest.synthetic import MediaSpec, make_media
from ingest.worker import clip_key, failure_belongs_to, item_samples
from shards.format import decode_sample


def _items(n: int) -> list[WorkItem]:
    return [WorkItem(key=f"k{i}", source="videos", location=f"/v/{i}.mp4") for i in range(n)]


def test_shards_are_consecutive_runs_and_appends_only_add_shards():
    first = assign_shards(_items(10), 4)
    assert [[i.key for i in s] for s in first] == [
        ["k0", "k1", "k2", "k3"],
        ["k4", "k5", "k6", "k7"],
        ["k8", "k9"],
    ]
    grown = assign_shards(_items(14), 4)
    assert grown[:2] == first[:2] and fingerprint(grown[0]) == fingerprint(first[0])
    assert fingerprint(grown[2]) != fingerprint(first[2])  # the partial last shard changed
    with pytest.raises(ValueError):
        assign_shards(_items(3), 0)


def test_keys_of_windows_and_split_clips():
    windowed = WorkItem(
        "yt", "audioset", "u", windows=[Window(0, 10, "yt_0"), Window(30, 40, "yt_30000")]
    )
    split = WorkItem("abc-def", "videos", "u")
    assert [clip_key(windowed, i) for i in range(2)] == ["yt_0", "yt_30000"]
    assert clip_key(split, 3) == "abc-def-0003"
    assert failure_belongs_to(windowed, "yt_30000") and not failure_belongs_to(windowed, "yt_5")
    assert failure_belongs_to(split, "abc-def") and failure_belongs_to(split, "abc-def-0012")
    assert not failure_belongs_to(split, "abc-def-x") and not failure_belongs_to(split, "abc")
    assert safe_key("a.b/c d") == "a_b_c_d" and segment_key("-x_Y", 30.0) == "-x_Y_30000"
    with pytest.raises(ValueError, match="both give key 'yt_0'"):
        check_unique_keys([windowed, WorkItem("yt_0", "audioset", "u")], "table")


def test_audioset_plan_groups_segments_by_video(tmp_path):
    csv = tmp_path / "segments.csv"
    csv.write_text(
        "# Segments csv created now\n# num_ytids=2\n# YTID, start_seconds, end_seconds, positive_labels\n"
        'vid_A, 0.000, 10.000, "/m/1"\nvid_B, 5.000, 15.000, "/m/2,/m/1"\n'
        'vid_A, 20.000, 30.000, "/m/2"\n'
    )
    labels = tmp_path / "labels.csv"
    labels.write_text('index,mid,display_name\n0,/m/1,"Dog"\n1,/m/2,"Bark, loud"\n')
    items = plan_audioset([str(csv)], "http://127.0.0.1:9/{YTID}.mp4", str(labels))
    assert [i.key for i in items] == ["vid_A", "vid_B"]
    assert items[0].location == "http://127.0.0.1:9/vid_A.mp4"
    assert [(w.start, w.end, w.key) for w in items[0].windows] == [
        (0.0, 10.0, "vid_A_0"),
        (20.0, 30.0, "vid_A_20000"),
    ]
    assert items[1].windows[0].meta["label_names"] == ["Bark, loud", "Dog"]
    assert items[1].windows[0].meta["label_indices"] == [1, 0]
    assert len(plan_audioset([str(csv)], "/data/{YTID}.mp4", limit=1)) == 1
    labels.write_text("index,mid,display_name\n0,/m/1,Dog\n")
    with pytest.raises(ValueError, match="not in the ontology"):
        plan_audioset([str(csv)], "/data/{YTID}.mp4", str(labels))


def test_summary_counts_reasons_and_groups_alike_errors():
    stats = [
        {
            "num_samples": 3,
            "failures": [
                {
                    "key": "a",
                    "reason": "truncated: /x/a.mp4: audio ends at 3.81 s but the file states 8.00 s",
                },
                {
                    "key": "b",
                    "reason": "truncated: /x/b.mp4: audio ends at 1.02 s but the file states 9.50 s",
                },
                {"key": "c", "reason": "http_error: http://h/c.mp4: HTTP Error 404: Not Found"},
            ],
        },
        {"num_samples": 2, "failures": []},
    ]
    results = [{"new_samples": 5, "new_failures": 3, "node": "n1"}]
    summary = summarize("out", stats, 2, 1, results, {}, seconds=2.0, cpus=2.0)
    assert summary.samples == 5 and summary.failures == 3 and summary.complete
    assert summary.failures_by_reason == {"truncated": 2, "http_error": 1}
    assert summary.top_errors[0]["count"] == 2 and summary.top_errors[0]["example"].startswith(
        "a: truncated"
    )
    assert summary.clips_per_second == 2.5 and summary.clips_per_second_per_core == 1.25
    assert summary.nodes == 1
    assert reason_code("corrupt: x") == "corrupt"
    assert error_pattern("no_audio_stream: /a/b.mp4 x") == error_pattern(
        "no_audio_stream: /c/d.mkv x"
    )
    text = summary.format()
    assert "truncated 2" in text and "1.25 clips/s per core" in text


def test_audio_only_policy_gives_a_placeholder_frame(tmp_path):
    song = make_media(
        tmp_path / "song.mp3", MediaSpec(seconds=3, video_codec=None, audio_codec="libmp3lame")
    )
    item = WorkItem(key="song", source="videos", location=str(song))
    ((key, failure),) = item_samples(item, JobOptions(output=str(tmp_path / "out")))
    assert key == "song" and failure.startswith("no_video_stream: ")
    job = JobOptions(
        output=str(tmp_path / "out"), media=MediaOptions(audio_only=True, short_side=64)
    )
    ((key, raw),) = item_samples(item, job)
    sample = decode_sample(raw)
    assert key == "song-0000" and sample["meta"]["audio_only"] is True
    assert len(sample["frames"]) == 1 and sample["frames"][0].shape == (64, 64, 3)
    assert abs(sample["meta"]["valid_samples"] - 3 * 16000) < 1600
