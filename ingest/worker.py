"""The work of one shard: fetch and decode its inputs, encode samples, write the shard.

Runs inside a Ray task (ingest/distribute.py) but is plain Python, so it can be called and
tested without Ray. Every input that gives no sample is recorded in the shard's stats with a
reason code and a detail (`"{reason}: {detail}"`); nothing an input does stops the shard.
"""

from __future__ import annotations

import re
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import av
import numpy as np

from ingest.config import JobOptions
from ingest.fetch import FetchError, local_copy
from ingest.items import WorkItem, fingerprint
from ingest.media import Clip, MediaError, MediaInfo, decode_clips, read_image
from shards import storage
from shards.format import CLIP_SAMPLES, SampleError, encode_sample
from shards.writer import ShardWriter, shard_name

PRODUCER = f"denseav-webscale ingest (PyAV {av.__version__}, FFmpeg {av.ffmpeg_version_info})"

Outcome = tuple[str, "dict[str, bytes] | str"]  # (key, encoded sample) or (key, failure reason)


def clip_key(item: WorkItem, index: int) -> str:
    """Sample key of clip `index` of `item`: its window's key, or `{key}-{index:04d}` when split."""
    return item.windows[index].key if item.windows is not None else f"{item.key}-{index:04d}"


def failure_belongs_to(item: WorkItem, failed_key: str) -> bool:
    """Whether a failure recorded under `failed_key` came from `item`."""
    if failed_key in item.sample_keys():
        return True
    return re.fullmatch(re.escape(item.key) + r"(-\d{4})?", failed_key) is not None


def _words_in(words: Sequence[Mapping[str, Any]], start: float, duration: float) -> list[dict]:
    """Word timings relative to the clip, for the words that start inside it (ends clipped)."""
    kept = []
    for w in words:
        if start <= w["start"] < start + duration:
            kept.append(
                {
                    "word": w["word"],
                    "start": round(w["start"] - start, 4),
                    "end": round(min(w["end"], start + duration) - start, 4),
                }
            )
    return kept


def _meta(item: WorkItem, index: int, clip: Clip, info: MediaInfo, still: bool) -> dict[str, Any]:
    meta = {k: v for k, v in item.meta.items() if k != "words"}
    if item.windows is not None:
        meta.update(item.windows[index].meta)
    meta.update(
        source=item.source,
        clip_start=round(clip.start, 6),
        clip_duration=round(clip.duration, 6),
        producer=PRODUCER,
        media={k: v for k, v in asdict(info).items() if v is not None},
    )
    if "words" in item.meta:
        meta["words"] = _words_in(item.meta["words"], clip.start, clip.duration)
    if not still and clip.frame_times:
        meta["frame_times"] = [round(t, 6) for t in clip.frame_times]
    return meta


def _placeholder_frame(side: int) -> np.ndarray:
    """A mid-grey square for audio-only inputs kept by the audio-only policy."""
    return np.full((side, side, 3), 128, np.uint8)


def item_samples(item: WorkItem, job: JobOptions) -> Iterator[Outcome]:
    """Encoded samples of one input, or one failure naming why it gave none."""
    media = job.media
    still = item.image is not None
    failed_keys = item.sample_keys() or [item.key]
    windows = [(w.start, w.end) for w in item.windows] if item.windows is not None else None
    try:
        frames_of_image = None
        if still:
            with local_copy(item.image, job.fetch) as image_path:
                frames_of_image = [read_image(image_path, media)]
        with local_copy(item.location, job.fetch) as path:
            options = replace(media, audio_only=True) if still else media
            info, clips = decode_clips(path, options, windows)
    except (MediaError, FetchError) as e:
        for key in failed_keys:
            yield key, f"{e.reason}: {e.detail}"
        return
    except Exception as e:  # noqa: BLE001 -- a decoder or library bug must not take the shard down
        for key in failed_keys:
            yield key, f"internal_error: {item.location}: {type(e).__name__}: {e}"
        return
    for index, clip in enumerate(clips):
        key = clip_key(item, index)
        if clip is None:
            window = item.windows[index]
            yield (
                key,
                (
                    f"window_out_of_range: {item.location} lasts {info.duration:.2f} s; "
                    f"the clip ({window.start:g}, {window.end:g}) lies outside it"
                ),
            )
            continue
        frames = frames_of_image or clip.frames
        meta = _meta(item, index, clip, info, still)
        if not frames:
            frames = [_placeholder_frame(media.short_side)]
            meta["audio_only"] = True
        if clip.audio.size == 0:
            yield key, f"no_audio: {item.location}: the clip at {clip.start:.2f} s holds no samples"
            continue
        try:
            yield key, encode_sample(key, clip.audio[:CLIP_SAMPLES], frames, meta)
        except SampleError as e:
            yield key, f"invalid_sample: {e}"


def _previous_samples(out_url: str, shard_id: int) -> Iterator[dict[str, bytes]]:
    """The samples of a published shard, in order, as `{"__key__": key, field: bytes}`."""
    current: dict[str, Any] = {}
    url = storage.join(out_url, shard_name(shard_id))
    with storage.open_read(url) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            key, field = member.name.split(".", 1)
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            current[field] = tar.extractfile(member).read()
    if current:
        yield current


def write_shard(
    shard_id: int,
    items: Sequence[WorkItem],
    job: JobOptions,
    previous: Mapping[str, Any] | None = None,
    on_item: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write shard `shard_id` of `job.output` from `items`; return a summary of the work.

    With `previous` (the shard's published stats record) only the items that failed are redone;
    the shard's existing samples are copied over. `on_item(samples, failures)` is called after
    each input (progress reporting).
    """
    started = time.time()
    redo = items
    kept: list[str] = []
    extra = {"ingest": {"items_sha256": fingerprint(items), "options": job.to_dict()}}
    new_samples = new_failures = 0
    with ShardWriter(job.output, shard_id, max_samples=1 << 30, extra_stats=extra) as writer:
        if previous is not None:
            failed = [f["key"] for f in previous.get("failures", [])]
            redo = [i for i in items if any(failure_belongs_to(i, k) for k in failed)]
            for sample in _previous_samples(job.output, shard_id):
                writer.write(sample)
                kept.append(sample["__key__"])
        present = set(kept)
        for item in redo:
            samples = failures = 0
            for key, outcome in item_samples(item, job):
                if key in present:
                    continue
                present.add(key)
                if isinstance(outcome, str):
                    writer.record_failure(key, outcome)
                    failures += 1
                else:
                    writer.write(outcome)
                    samples += 1
            new_samples += samples
            new_failures += failures
            if on_item is not None:
                on_item(samples, failures)
    return {
        "shard_id": shard_id,
        "new_samples": new_samples,
        "new_failures": new_failures,
        "kept_samples": len(kept),
        "seconds": time.time() - started,
    }
