"""The sound corpus in AudioSet's layout: MP4 videos and a segment CSV.

    audioset/videos/<YTID>.mp4            H.264 + AAC (22.05 kHz), ``fps`` frames/s, 10/20/30 s
    audioset/toyworld_segments.csv        three "#" lines, then rows of
                                          YTID, start_seconds, end_seconds, positive_labels
    audioset/toyworld_eval_segments.csv   the same for held-out videos (like eval_segments.csv)
    audioset/toyworld_retrieval_segments.csv  the same for the held-out sound retrieval videos
    audioset/class_labels_indices.csv     index,mid,display_name

In each training and held-out video 1-3 objects are visible at any time; each appears, drifts
across the frame (bouncing off the borders) and disappears, and emits its class's sound exactly
while visible. A segment's labels are the classes visible for at least one second of it.

Sound retrieval videos are built so that a clip's frame can be told apart from every other
clip's frame by its audio alone. In the videos above, sounds overlap and one object usually
sounds for the whole segment, so under DenseAV's similarity (max over image positions, mean
over time) any frame showing that object scores as high as the clip's own: an ideal model would
rank the own frame first for fewer than one clip in ten of a 100-way pool. A retrieval video
is one 10 s segment in which ``RETRIEVAL_OBJECTS`` objects of distinct classes stay still on
screen throughout and are heard one after another, as a caption names its objects in turn.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.toyworld.classes import ToyClass
from ingest.toyworld.config import WorldConfig
from ingest.toyworld.media import encode_mp4
from ingest.toyworld.render import (
    ObjectSpec,
    Patch,
    background,
    finish,
    paste,
    rasterize,
    sample_object,
)
from ingest.toyworld.scene import place_objects
from ingest.toyworld.sounds import NOISE_FLOOR, SAMPLE_RATE, class_sound, fade

MIN_LABEL_SECONDS = 1.0
SPLITS = ("train", "eval", "retrieval")
RETRIEVAL_OBJECTS = 3
RETRIEVAL_GAP_SECONDS = (0.2, 0.8)  # silence before, between and after the sounds of a clip
VIDEO_AUDIO_RATE = 22050  # like web video, not the model's 16 kHz: the ingest must resample
VIDEOS_SUBDIR = "videos"  # of the audioset folder
VIDEO_FILE_TEMPLATE = "{YTID}.mp4"


@dataclass(frozen=True)
class Track:
    """One object's life in a video: visible during [start, end) seconds, moving from its
    placed centre with ``velocity`` (pixels/s), bouncing inside the frame."""

    obj: ObjectSpec
    start: float
    end: float
    velocity: tuple[float, float]


@dataclass(frozen=True)
class Sound:
    """One class's sound in a soundtrack, heard during [start, end) seconds."""

    cls: ToyClass
    start: float
    end: float


def youtube_id(seed: int, index: int, split: str = "train") -> str:
    """A stable 11-character YouTube-style id ([A-Za-z0-9_-]) for video ``index`` of ``split``."""
    name = f"toyworld-{seed}-{index}" if split == "train" else f"toyworld-{seed}-{split}-{index}"
    digest = hashlib.sha256(name.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


# Per slot: (first start, track length, gap between tracks) ranges in seconds. Slot 0 is never
# empty; slots 1 and 2 add a second and, more rarely, a third object. Long tracks keep a 10 s
# segment's labels close to what any one of its frames shows.
_SLOTS = (((0, 0), (10, 20), (0, 0)), ((0, 8), (8, 16), (5, 12)), ((4, 16), (4, 8), (10, 20)))


def plan_tracks(
    rng: np.random.Generator,
    classes: tuple[ToyClass, ...],
    duration: float,
    size: int,
    scale: tuple[float, float],
) -> list[Track]:
    """Object tracks for a video, in three slots (see ``_SLOTS``): 1-3 objects visible at any
    time, each for several seconds. Objects visible at the same time have different classes."""
    tracks: list[Track] = []
    for first, length_range, gap_range in _SLOTS:
        t = float(rng.uniform(*first))
        while t < duration - 1.0:
            length = rng.uniform(*length_range)
            end = min(duration, t + length) if duration - (t + length) >= 2.0 else duration
            busy = {tr.obj.cls.name for tr in tracks if tr.start < end and t < tr.end}
            free = [c for c in classes if c.name not in busy]
            cls = free[int(rng.integers(0, len(free)))]
            half = rng.uniform(*scale) * size
            center = tuple(float(v) for v in rng.uniform(half, size - half, size=2))
            speed, angle = rng.uniform(0, 14), rng.uniform(0, 2 * np.pi)
            velocity = (float(speed * np.cos(angle)), float(speed * np.sin(angle)))
            obj = sample_object(cls, rng, center, float(half))
            tracks.append(Track(obj, float(t), float(end), velocity))
            t = end + float(rng.uniform(*gap_range))
    return tracks


def _bounce(x: float, lo: float, hi: float) -> float:
    """Fold a free position into [lo, hi] as if it bounced off both ends."""
    span = hi - lo
    if span <= 0:
        return lo
    r = (x - lo) % (2 * span)
    return lo + (r if r <= span else 2 * span - r)


def render_frames(
    rng: np.random.Generator, tracks: list[Track], duration: int, fps: int, size: int
) -> np.ndarray:
    """Frames (duration * fps, size, size, 3) uint8 of the tracks over a static background."""
    base = background(rng, size)
    patches: list[Patch] = [rasterize(tr.obj) for tr in tracks]
    frames = np.empty((duration * fps, size, size, 3), np.uint8)
    for i in range(len(frames)):
        t = (i + 0.5) / fps
        canvas = base.copy()
        for tr, patch in zip(tracks, patches):
            if not tr.start <= t < tr.end:
                continue
            half = tr.obj.half_size
            x0, y0 = tr.obj.center
            x = _bounce(x0 + tr.velocity[0] * (t - tr.start), half, size - half)
            y = _bounce(y0 + tr.velocity[1] * (t - tr.start), half, size - half)
            paste(canvas, (), (), patch, round(x - x0), round(y - y0))
        frames[i] = finish(canvas, rng)
    return frames


def plan_retrieval_video(
    rng: np.random.Generator,
    classes: tuple[ToyClass, ...],
    duration: float,
    size: int,
    scale: tuple[float, float],
) -> tuple[list[Track], list[Sound]]:
    """``RETRIEVAL_OBJECTS`` still objects of distinct classes, visible for the whole video, and
    their sounds one after another in random order: equal shares of ``duration`` after random
    gaps of ``RETRIEVAL_GAP_SECONDS`` before, between and after them."""
    chosen = [classes[i] for i in rng.choice(len(classes), RETRIEVAL_OBJECTS, replace=False)]
    objects = place_objects(rng, chosen, size, scale)
    tracks = [Track(obj, 0.0, duration, (0.0, 0.0)) for obj in objects]
    gaps = rng.uniform(*RETRIEVAL_GAP_SECONDS, size=len(objects) + 1)
    length = (duration - gaps.sum()) / len(objects)
    sounds, t = [], float(gaps[0])
    for k in rng.permutation(len(objects)):
        sounds.append(Sound(objects[k].cls, round(t, 3), round(t + length, 3)))
        t += length + float(gaps[len(sounds)])
    return tracks, sounds


def render_audio(rng: np.random.Generator, sounds: list[Sound], duration: int) -> np.ndarray:
    """The soundtrack (duration * 16000,) float32: each sound during its interval, with 50 ms
    fades, over a faint noise floor."""
    out = rng.normal(0.0, NOISE_FLOOR, size=duration * SAMPLE_RATE)
    for sound in sounds:
        a, b = int(sound.start * SAMPLE_RATE), int(sound.end * SAMPLE_RATE)
        out[a:b] += fade(class_sound(sound.cls.name, b - a, rng))
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def segment_labels(tracks: list[Track], start: float, end: float) -> list[ToyClass]:
    """Classes visible for at least ``MIN_LABEL_SECONDS`` within [start, end), by class id."""
    seen: dict[int, float] = {}
    classes: dict[int, ToyClass] = {}
    for tr in tracks:
        overlap = min(end, tr.end) - max(start, tr.start)
        if overlap > 0:
            cid = tr.obj.cls.ade_class_id
            seen[cid] = seen.get(cid, 0.0) + overlap
            classes[cid] = tr.obj.cls
    return [classes[c] for c in sorted(seen) if seen[c] >= MIN_LABEL_SECONDS]


def make_video(cfg: WorldConfig, root: Path, index: int, split: str = "train") -> dict:
    """Plan, render and encode video ``index`` of ``split`` ("train"; "eval" for held-out videos
    or "retrieval" for held-out sound retrieval videos, each from its own seed stream) into
    ``root`` (the ``audioset`` folder); returns its id, split, duration, segments
    [(start, end, [mid, ...]), ...], object tracks and sounds."""
    if split not in SPLITS:
        raise ValueError(f"unknown AudioSet split {split!r}; expected one of {SPLITS}")
    rng = cfg.rng("audioset" if split == "train" else f"audioset_{split}", index)
    seg = cfg.segment_seconds
    if split == "retrieval":
        duration = seg
        tracks, sounds = plan_retrieval_video(
            rng, cfg.sounding_classes, float(duration), cfg.image_size, cfg.object_scale
        )
    else:
        duration = seg * int(
            rng.integers(cfg.min_video_seconds // seg, cfg.max_video_seconds // seg + 1)
        )
        tracks = plan_tracks(
            rng, cfg.sounding_classes, float(duration), cfg.image_size, cfg.object_scale
        )
        sounds = [Sound(tr.obj.cls, tr.start, tr.end) for tr in tracks]
    frames = render_frames(rng, tracks, duration, cfg.fps, cfg.image_size)
    audio = render_audio(rng, sounds, duration)
    ytid = youtube_id(cfg.seed, index, split)
    video = root / VIDEOS_SUBDIR / VIDEO_FILE_TEMPLATE.format(YTID=ytid)
    encode_mp4(video, frames, cfg.fps, audio, SAMPLE_RATE, VIDEO_AUDIO_RATE)
    segments = []
    for k in range(duration // cfg.segment_seconds):
        start, end = k * cfg.segment_seconds, (k + 1) * cfg.segment_seconds
        labels = segment_labels(tracks, start, end)
        if labels:
            segments.append((start, end, [c.mid for c in labels]))
    return {
        "ytid": ytid,
        "split": split,
        "duration": duration,
        "segments": segments,
        "tracks": [
            {"class": tr.obj.cls.name, "start": round(tr.start, 3), "end": round(tr.end, 3)}
            for tr in tracks
        ],
        "sounds": [
            {"class": s.cls.name, "start": round(s.start, 3), "end": round(s.end, 3)}
            for s in sounds
        ],
    }


def write_segments_csv(path: Path, videos: list[dict], num_labels: int) -> int:
    """Write the AudioSet segment CSV (three '#' header lines, then
    ``YTID, start_seconds, end_seconds, "mid,mid"`` rows); returns the number of segments."""
    rows = [(v["ytid"], s, e, labels) for v in videos for s, e, labels in v["segments"]]
    positives = sum(len(r[3]) for r in rows)
    lines = [
        "# Segments csv created by ingest.toyworld",
        (
            f"# num_ytids={len(videos)}, num_segs={len(rows)}, num_unique_labels={num_labels}, "
            f"num_positive_labels={positives}"
        ),
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    lines += [f'{y}, {s:.3f}, {e:.3f}, "{",".join(labels)}"' for y, s, e, labels in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return len(rows)


def write_class_labels_csv(path: Path, classes: tuple[ToyClass, ...]) -> None:
    """Write the ontology class-label CSV (``index,mid,display_name``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["index,mid,display_name"]
    lines += [f'{i},{c.mid},"{c.display_name}"' for i, c in enumerate(classes)]
    path.write_text("\n".join(lines) + "\n")
