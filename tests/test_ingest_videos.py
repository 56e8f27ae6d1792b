"""The `videos` source through the real Ray (one local session for the module): a table of odd
files made by ffmpeg, checked sample by sample on local disk and on S3; reruns, retry of
failures, and a changed input."""

from __future__ import annotations

import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.config import JobOptions
from ingest.distribute import run_job
from ingest.media import MediaOptions
from ingest.report import SUMMARY_NAME
from ingest.sources.videos import plan, read_table
from ingest.synthetic import MediaSpec, make_media, truncate
from ingest.testing import local_ray
from shards import storage
from shards.format import CLIP_SAMPLES, SAMPLE_RATE, decode_sample
from shards.index import load_index

GOOD = {  # name -> (spec, expected clip durations)
    "long_h264.mp4": (MediaSpec(seconds=21.5, width=160, height=120), [10.0, 10.0, 1.5]),
    "vp9_opus.webm": (
        MediaSpec(
            seconds=3,
            video_codec="libvpx-vp9",
            audio_codec="libopus",
            sample_rate=48000,
            width=160,
            height=120,
            extra_args=("-deadline", "realtime", "-cpu-used", "8"),
        ),
        [3.0],
    ),
    "mpeg4_mp3.mkv": (
        MediaSpec(
            seconds=3,
            video_codec="mpeg4",
            audio_codec="libmp3lame",
            sample_rate=22050,
            width=160,
            height=120,
        ),
        [3.0],
    ),
    "pcm8k_51.mkv": (
        MediaSpec(
            seconds=2, audio_codec="pcm_s16le", sample_rate=8000, channels=6, width=160, height=120
        ),
        [2.0],
    ),
    "rotated_vfr.mp4": (
        MediaSpec(seconds=4, rotation=270, variable_frame_rate=True, width=160, height=120),
        [4.0],
    ),
}
BAD = {  # name -> expected failure reason
    "silent.mp4": "no_audio_stream",
    "music.mp3": "no_video_stream",
    "empty.mp4": "empty_file",
    "readme.mp4": "not_media",
    "cut.mp4": "truncated",
    "gone.mp4": "missing_file",
}
MEDIA = MediaOptions(frames_per_clip=2, short_side=96)


def _make_bad(folder, name):
    path = folder / name
    if name == "silent.mp4":
        make_media(path, MediaSpec(seconds=2, audio_codec=None, width=160, height=120))
    elif name == "music.mp3":
        make_media(path, MediaSpec(seconds=2, video_codec=None, audio_codec="libmp3lame"))
    elif name == "empty.mp4":
        path.write_bytes(b"")
    elif name == "readme.mp4":
        path.write_text("this is not a video\n" * 20)
    elif name == "cut.mp4":
        truncate(
            make_media(
                path,
                MediaSpec(seconds=6, width=160, height=120, extra_args=("-movflags", "+faststart")),
            ),
            0.5,
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for name, (spec, _) in GOOD.items():
        make_media(folder / "media" / name, spec)
    for name in BAD:
        _make_bad(folder / "media", name)
    names = list(GOOD) + list(BAD)
    lines = ["path,caption,labels"] + [f"media/{n},the clip {n},cat;dog" for n in names]
    (folder / "table.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def ray_session(s3_server):
    """Started after the S3 server, so that the workers inherit its AWS_* settings."""
    with local_ray():
        yield


def _samples(out_url: str) -> dict[str, dict]:
    """Every sample of every shard listed in the dataset's index, decoded."""
    index = load_index(out_url)
    found = {}
    for entry in index.shards:
        with storage.open_read(entry.url) as stream:
            members: dict[str, dict] = {}
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                for m in tar:
                    key, field = m.name.split(".", 1)
                    members.setdefault(key, {"__key__": key})[field] = tar.extractfile(m).read()
        for key, raw in members.items():
            assert key not in found, f"duplicate sample {key}"
            found[key] = decode_sample(raw)
    return found


def _failures(out_url: str) -> dict[str, str]:
    out = {}
    for name in storage.listdir(out_url):
        if name.endswith(".stats.json"):
            for f in json.loads(storage.read_bytes(storage.join(out_url, name)))["failures"]:
                out[f["key"]] = f["reason"]
    return out


def _check_dataset(out_url: str, items) -> None:
    by_name = {i.meta["url"].split("/")[-1]: i for i in items}
    samples = _samples(out_url)
    expected_keys = set()
    for name, (_, durations) in GOOD.items():
        item = by_name[name]
        for index, duration in enumerate(durations):
            key = f"{item.key}-{index:04d}"
            expected_keys.add(key)
            s = samples[key]
            assert s["audio"].shape == (CLIP_SAMPLES,)
            meta = s["meta"]
            assert abs(meta["valid_samples"] - duration * SAMPLE_RATE) < 0.06 * SAMPLE_RATE, (
                key,
                meta,
            )
            assert not s["audio"][meta["valid_samples"] :].any(), "padding must be silence"
            assert abs(meta["clip_start"] - 10.0 * index) < 1e-6
            assert meta["source"] == "videos" and meta["caption"] == f"the clip {name}"
            assert meta["labels"] == ["cat", "dog"] and meta["url"] == f"media/{name}"
            assert len(s["frames"]) == 2 and len(meta["frame_times"]) == 2
            for frame in s["frames"]:
                assert min(frame.shape[:2]) == 96 and frame.shape[2] == 3
            if name == "rotated_vfr.mp4":  # 160x120 stored, turned upright to portrait
                assert s["frames"][0].shape[:2] == (128, 96)
    assert set(samples) == expected_keys
    failures = _failures(out_url)
    assert {k: r.split(":")[0] for k, r in failures.items()} == {
        by_name[n].key: r for n, r in BAD.items()
    }
    assert all(len(r) > len(r.split(":")[0]) + 5 for r in failures.values()), "reasons need details"


def test_table_formats_give_the_same_plan(corpus):
    rows = read_table(str(corpus / "table.csv"))
    (corpus / "table.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), corpus / "table.parquet")
    plans = [plan(str(corpus / f"table.{ext}")) for ext in ("csv", "jsonl", "parquet")]
    assert plans[0] == plans[1] == plans[2]
    assert len({i.key for i in plans[0]}) == len(GOOD) + len(BAD)
    assert plan(str(corpus / "table.csv"))[0].key == plans[0][0].key  # stable derived keys


def test_bad_tables_stop_with_a_message(tmp_path):
    (tmp_path / "t.csv").write_text("name,caption\nx.mp4,hi\n")
    with pytest.raises(ValueError, match="needs one of the columns"):
        plan(str(tmp_path / "t.csv"))
    (tmp_path / "d.csv").write_text("path,key\na.mp4,k\nb.mp4,k\n")
    with pytest.raises(ValueError, match="both give key 'k'"):
        plan(str(tmp_path / "d.csv"))


def test_local_run_rerun_and_retry_failed(corpus, ray_session, tmp_path):
    table = str(corpus / "table.csv")
    items = plan(table)
    out = str(tmp_path / "out")
    job = JobOptions(output=out, items_per_shard=3, media=MEDIA, progress=False)
    summary = run_job(items, job)
    assert summary.complete and summary.shards_written == 4
    assert summary.samples == summary.new_samples == 7 and summary.failures == len(BAD)
    assert summary.failures_by_reason == {r: 1 for r in BAD.values()}
    assert summary.clips_per_second > 0
    _check_dataset(out, items)
    assert json.loads(storage.read_bytes(storage.join(out, SUMMARY_NAME)))["samples"] == 7

    again = run_job(items, job)  # nothing to do: every shard has its success marker
    assert again.shards_skipped == 4 and again.shards_written == 0 and again.samples == 7

    # The missing file appears; --retry-failed redoes only the failed inputs of done shards.
    make_media(corpus / "media" / "gone.mp4", MediaSpec(seconds=2, width=160, height=120))
    try:
        retried = run_job(
            items,
            JobOptions(
                output=out, items_per_shard=3, media=MEDIA, progress=False, retry_failed=True
            ),
        )
    finally:
        (corpus / "media" / "gone.mp4").unlink()
    assert retried.samples == 8 and retried.failures == len(BAD) - 1
    gone = next(i for i in items if i.meta["url"].endswith("gone.mp4"))
    assert f"{gone.key}-0000" in _samples(out)

    with pytest.raises(ValueError, match="made from other inputs"):
        run_job(items[1:], job)


def test_s3_output_first_clip_only(corpus, ray_session, s3_server):
    items = plan(str(corpus / "table.csv"))
    out = s3_server.fresh_url("videos")
    media = MediaOptions(frames_per_clip=2, short_side=96, max_clips=1)
    summary = run_job(items, JobOptions(output=out, items_per_shard=4, media=media, progress=False))
    assert summary.complete and summary.samples == len(GOOD)
    samples = _samples(out)
    long_key = next(i.key for i in items if i.meta["url"].endswith("long_h264.mp4"))
    assert f"{long_key}-0000" in samples and f"{long_key}-0001" not in samples
    assert all(s["audio"].shape == (CLIP_SAMPLES,) for s in samples.values())
    assert len(_failures(out)) == len(BAD)
