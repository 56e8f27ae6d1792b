"""Media work: one decode pass per input file -> 16 kHz mono audio and JPEG frames per clip.

PyAV (which ships its own FFmpeg) opens the container once and demuxes audio and video
together from the earliest clip start: audio is decoded and resampled to mono float32 at the
target rate by FFmpeg's resampler, and the frames shown at the chosen times are converted and
resized by FFmpeg's scaler, turned upright by the stream's rotation metadata and JPEG encoded.
Nothing is re-encoded to an intermediate file. ingest/README.md explains the choice of decoder
with the benchmark's numbers.

Every way an input can be unusable raises `MediaError` with a short `reason` code (the run
summary counts by it) and a detail message naming the file.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps

# Audio that ends this much before the stream says it should counts as a truncated file.
_TRUNCATION_TOLERANCE_S = 0.5


class MediaError(Exception):
    """An input that cannot give clips. `reason` is a short code, `detail` the explanation."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class MediaOptions:
    """How clips are cut from an input and what they hold.

    `windows` given to `decode_clips` override the splitting options (AudioSet gives its own).
    """

    sample_rate: int = 16000
    clip_seconds: float = 10.0
    frames_per_clip: int = 3
    short_side: int = 256  # frames are scaled down (never up) so their short side is at most this
    jpeg_quality: int = 90
    max_clips: int | None = None  # None: every clip of a long input; 1: the first clip only
    min_clip_seconds: float = 1.0  # a trailing piece shorter than this is dropped
    audio_only: bool = False  # accept inputs without a video stream (their clips have no frames)
    decode_threads: int = 1  # per decoder; Ray runs one task per core (0: FFmpeg picks)

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.clip_seconds <= 0:
            raise ValueError(f"sample_rate and clip_seconds must be positive, got {self}")
        if self.frames_per_clip < 1 or self.short_side < 16:
            raise ValueError(f"frames_per_clip must be >= 1 and short_side >= 16, got {self}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.max_clips is not None and self.max_clips < 1:
            raise ValueError(f"max_clips must be >= 1 or None, got {self.max_clips}")


@dataclass
class MediaInfo:
    """What the container says about an input."""

    duration: float | None
    audio_codec: str | None
    video_codec: str | None
    source_sample_rate: int | None
    channels: int | None
    width: int | None
    height: int | None
    rotation: int = 0


@dataclass
class Clip:
    """One cut of an input.

    `audio` is float32 `(n,)` at the target rate with `n = round(duration * sample_rate)` valid
    (unpadded) samples; `frames` are JPEG bytes shown at `frame_times` (seconds in the input).
    """

    start: float
    duration: float
    audio: np.ndarray
    frames: list[bytes] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list)


def clip_windows(duration: float, options: MediaOptions) -> list[tuple[float, float]]:
    """Consecutive `clip_seconds` windows over `[0, duration)` (a short tail if long enough)."""
    windows = []
    start = 0.0
    while start < duration and (options.max_clips is None or len(windows) < options.max_clips):
        end = min(start + options.clip_seconds, duration)
        if end - start >= options.min_clip_seconds or not windows and end - start > 0:
            windows.append((start, end))
        start += options.clip_seconds
    return windows


def frame_times(start: float, end: float, count: int) -> list[float]:
    """`count` times evenly spaced inside `[start, end)`: the centres of `count` equal parts."""
    step = (end - start) / count
    return [start + (i + 0.5) * step for i in range(count)]


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """`(H, W, 3)` uint8 -> JPEG bytes."""
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """Size with the short side at most `short_side`, aspect kept (never scaled up)."""
    scale = min(1.0, short_side / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_image(path: str | Path, options: MediaOptions) -> bytes:
    """A still image (JPEG, PNG, ...) -> upright (EXIF orientation applied), scaled JPEG bytes."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
            img = img.resize(scaled_size(*img.size, options.short_side), Image.BILINEAR)
    except FileNotFoundError as e:
        raise MediaError("missing_file", f"{path} does not exist") from e
    except (OSError, ValueError) as e:
        raise MediaError("bad_image", f"{path}: {e}") from e
    return encode_jpeg(np.asarray(img), options.jpeg_quality)


def _rgb(frame: av.VideoFrame, short_side: int) -> np.ndarray:
    """Decoded frame -> upright `(H, W, 3)` uint8 with the short side at most `short_side`."""
    width, height = scaled_size(frame.width, frame.height, short_side)
    rgb = frame.reformat(
        width=width, height=height, format="rgb24", interpolation="AREA"
    ).to_ndarray()
    turns = round((frame.rotation or 0) / 90) % 4  # display matrix: degrees counterclockwise
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


# Leading bytes of common containers: ISO BMFF (after a 4-byte size), Matroska/WebM, RIFF, Ogg,
# MP3 with an ID3 tag, FLAC.
_MAGIC = (
    (4, b"ftyp"),
    (0, b"\x1a\x45\xdf\xa3"),
    (0, b"RIFF"),
    (0, b"OggS"),
    (0, b"ID3"),
    (0, b"fLaC"),
)


def _looks_like_media(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(16)
    return any(head[at : at + len(magic)] == magic for at, magic in _MAGIC)


def _open(path: str | Path) -> av.container.InputContainer:
    path = str(path)
    if "://" not in path:
        if not os.path.exists(path):
            raise MediaError("missing_file", f"{path} does not exist")
        if os.path.getsize(path) == 0:
            raise MediaError("empty_file", f"{path} has zero bytes")
    try:
        return av.open(path, mode="r", timeout=30.0)
    except av.error.InvalidDataError as e:
        if "://" not in path and _looks_like_media(path):
            raise MediaError(
                "corrupt", f"{path}: a media container FFmpeg cannot open, likely truncated ({e})"
            ) from e
        raise MediaError("not_media", f"{path}: FFmpeg finds no media in it ({e})") from e
    except av.error.FFmpegError as e:
        raise MediaError("unreadable", f"{path}: {e}") from e


def _info(container: av.container.InputContainer, audio, video) -> MediaInfo:
    duration = None
    if container.duration is not None and container.duration > 0:
        duration = container.duration / av.time_base
    else:
        ends = [
            float(s.duration * s.time_base) for s in (audio, video) if s is not None and s.duration
        ]
        duration = max(ends) if ends else None
    return MediaInfo(
        duration=duration,
        audio_codec=audio.codec_context.name if audio is not None else None,
        video_codec=video.codec_context.name if video is not None else None,
        source_sample_rate=audio.codec_context.sample_rate if audio is not None else None,
        channels=audio.codec_context.channels if audio is not None else None,
        width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None,
    )


def _stream_end(stream, fallback: float | None) -> float | None:
    if stream is not None and stream.duration:
        start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        return start + float(stream.duration * stream.time_base)
    return fallback


class _FramePicker:
    """Keeps, for each target time, the frame on screen at that time (the latest with pts <= t)."""

    def __init__(self, targets: list[float], short_side: int):
        self.order = sorted(range(len(targets)), key=lambda i: targets[i])
        self.targets = targets
        self.short_side = short_side
        self.picked: list[np.ndarray | None] = [None] * len(targets)
        self.previous: av.VideoFrame | None = None
        self.rotation = 0

    @property
    def done(self) -> bool:
        return not self.order

    def push(self, frame: av.VideoFrame, time: float) -> None:
        while self.order and self.targets[self.order[0]] < time:
            shown = self.previous if self.previous is not None else frame
            self.picked[self.order.pop(0)] = _rgb(shown, self.short_side)
        self.previous = frame
        self.rotation = frame.rotation or 0

    @property
    def next_target(self) -> float:
        return self.targets[self.order[0]] if self.order else math.inf

    def settle(self, until: float) -> None:
        """No frame before `until` is still to come: targets before it get the last frame seen."""
        while self.previous is not None and self.order and self.next_target < until:
            self.picked[self.order.pop(0)] = _rgb(self.previous, self.short_side)

    def finish(self) -> None:
        """The last frame stays on screen until the end; targets after it get it."""
        self.settle(math.inf)


class _GopDecoder:
    """Decodes only what the chosen frames need: from the keyframe before a target to just past it.

    Packets of the current group of pictures (keyframe to keyframe) are held compressed until
    one lies past the next target time (or the next keyframe comes before it): only then is the
    group decoded, from its keyframe, and decoding pauses again as soon as every target so far
    has its frame. Groups without a target are dropped undecoded. A group's held packets are
    decoded anyway once they exceed `max_buffer` bytes.
    """

    def __init__(self, stream, picker: _FramePicker, max_buffer: int = 64 << 20):
        self.codec = stream.codec_context
        self.time_base = stream.time_base
        self.picker = picker
        self.max_buffer = max_buffer
        self.buffer: list[av.Packet] = []
        self.buffered = 0
        self.live = False  # decode packets as they arrive (a target may still be ahead)
        self.fed = False  # the decoder holds state of the current group
        self.last_time = -math.inf  # time of the last frame handed to the picker

    def _decode(self, packet: av.Packet | None) -> None:
        self.fed = True
        for frame in self.codec.decode(packet):
            # Frames drained by a None packet carry no time base: use the stream's.
            self.last_time = float(frame.pts * self.time_base) if frame.pts is not None else 0.0
            self.picker.push(frame, self.last_time)

    def _feed(self) -> None:
        for held in self.buffer:
            self._decode(held)
        self.buffer, self.buffered = [], 0
        # Pause once every target up to the last frame has its frame; a target equal to that
        # frame's time still waits for the next frame.
        self.live = self.picker.next_target <= self.last_time

    def _end_group(self, next_key: float) -> None:
        needed = self.picker.next_target < next_key  # a target before the next keyframe
        if needed and self.buffer:
            self._feed()
        if self.fed:
            if needed:
                self._decode(None)  # drain: the group's last frames reach the picker
            self.codec.flush_buffers()
            self.fed = False
        self.picker.settle(next_key)
        self.buffer, self.buffered, self.live = [], 0, False

    def push(self, packet: av.Packet) -> None:
        if packet.size == 0:  # the demuxer's end-of-stream packet
            self.finish()
            return
        time = float(packet.pts * self.time_base) if packet.pts is not None else None
        if packet.is_keyframe and time is not None:
            self._end_group(time)
        self.buffer.append(packet)
        self.buffered += packet.size
        if (
            self.live
            or time is None
            or time > self.picker.next_target
            or self.buffered > self.max_buffer
        ):
            self._feed()

    def finish(self) -> None:
        self._end_group(math.inf)


def decode_clips(
    path: str | Path,
    options: MediaOptions = MediaOptions(),
    windows: Sequence[tuple[float, float]] | None = None,
) -> tuple[MediaInfo, list[Clip | None]]:
    """Decode `path` once and cut it into clips.

    `windows` are `(start, end)` seconds in the input (AudioSet segments); the clips returned
    line up with them, None for a window that lies wholly past the end of the input (all of
    them outside raises). A window reaching past the end gives a shorter clip (its `duration`
    says how much is real). When `windows` is None the input is split into consecutive
    `options.clip_seconds` clips. Raises `MediaError`.
    """
    container = _open(path)
    try:
        return _decode(container, str(path), options, windows)
    finally:
        container.close()


def _decode(
    container, path: str, options: MediaOptions, windows
) -> tuple[MediaInfo, list[Clip | None]]:
    audio = container.streams.audio[0] if container.streams.audio else None
    videos = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ]
    video = videos[0] if videos else None
    info = _info(container, audio, video)
    if audio is None and video is None:
        raise MediaError("not_media", f"{path} has neither an audio nor a video stream")
    if audio is None:
        raise MediaError(
            "no_audio_stream", f"{path} has no audio stream ({info.video_codec} video only)"
        )
    if video is None and not options.audio_only:
        raise MediaError(
            "no_video_stream", f"{path} has no video stream ({info.audio_codec} audio only)"
        )
    if info.duration is None:
        raise MediaError("unknown_duration", f"{path}: the container states no duration")

    asked = windows
    if windows is None:
        windows = clip_windows(info.duration, options)
        if not windows:
            raise MediaError(
                "too_short", f"{path} lasts {info.duration:.3f} s, shorter than a clip"
            )
    else:
        windows = [(float(s), min(float(e), info.duration)) for s, e in windows]
        inside = [i for i, (s, e) in enumerate(windows) if s < e]
        if not inside:
            raise MediaError(
                "window_out_of_range",
                f"{path} lasts {info.duration:.2f} s; the windows {list(asked)} lie outside it",
            )
        windows = [windows[i] for i in inside]

    for stream in (audio, video):
        if stream is not None:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = options.decode_threads
    targets = (
        [t for s, e in windows for t in frame_times(s, e, options.frames_per_clip)] if video else []
    )
    picker = _FramePicker(targets, options.short_side)
    gops = _GopDecoder(video, picker) if video is not None else None
    audio_end = max(e for _, e in windows)
    first = min(s for s, _ in windows)

    resampler = av.AudioResampler(format="flt", layout="mono", rate=options.sample_rate)
    pieces: list[np.ndarray] = []
    audio_t0: float | None = None
    decoded_until = 0.0  # seconds of audio decoded so far, from audio_t0
    failure: Exception | None = None

    if first > 0:
        container.seek(int(first * av.time_base), backward=True, any_frame=False)
    streams = [audio] + ([video] if video is not None else [])
    try:
        for packet in container.demux(*streams):
            if packet.stream is audio:
                if audio_t0 is not None and audio_t0 + decoded_until >= audio_end:
                    if picker.done:
                        break
                    continue
                for frame in packet.decode():
                    if audio_t0 is None:
                        audio_t0 = frame.time if frame.time is not None else 0.0
                    for out in resampler.resample(frame):
                        samples = out.to_ndarray().reshape(-1)
                        pieces.append(samples)
                        decoded_until += samples.size / options.sample_rate
            elif not picker.done:
                gops.push(packet)
    except av.error.FFmpegError as e:
        failure = e
    for out in resampler.resample(None):
        pieces.append(out.to_ndarray().reshape(-1))
    if gops is not None and not picker.done:  # the demuxer stopped before its end-of-stream packet
        try:
            gops.finish()
        except av.error.FFmpegError as e:
            failure = failure or e
    picker.finish()
    info.rotation = picker.rotation

    signal = (
        np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
    )
    if audio_t0 is None:
        why = f" ({failure})" if failure else ""
        raise MediaError("decode_error", f"{path}: no audio could be decoded{why}")
    if video is not None and targets and any(p is None for p in picker.picked):
        why = f" ({failure})" if failure else ""
        raise MediaError("decode_error", f"{path}: no video frame could be decoded{why}")

    available_end = audio_t0 + signal.size / options.sample_rate
    expected_end = min(audio_end, _stream_end(audio, info.duration) or audio_end)
    if available_end < expected_end - _TRUNCATION_TOLERANCE_S:
        cause = f"decoding stopped: {failure}" if failure else "the data ends early"
        raise MediaError(
            "truncated",
            f"{path}: audio ends at {available_end:.2f} s but the file states "
            f"{expected_end:.2f} s ({cause})",
        )

    clips = []
    per_clip = options.frames_per_clip
    for i, (start, end) in enumerate(windows):
        end = min(end, available_end)
        begin = round((start - audio_t0) * options.sample_rate)
        count = max(0, round((end - start) * options.sample_rate))
        piece = signal[max(begin, 0) : max(begin + count, 0)]
        if begin < 0:  # the audio stream starts after the window does: silence before it
            piece = np.concatenate([np.zeros(min(-begin, count), np.float32), piece])
        frames = picker.picked[i * per_clip : (i + 1) * per_clip] if video is not None else []
        clips.append(
            Clip(
                start=start,
                duration=piece.size / options.sample_rate,
                audio=np.clip(piece, -1.0, 1.0),
                frames=[encode_jpeg(f, options.jpeg_quality) for f in frames],
                frame_times=targets[i * per_clip : (i + 1) * per_clip] if video is not None else [],
            )
        )
    if asked is not None and len(clips) < len(asked):  # None marks the windows outside the input
        aligned: list[Clip | None] = [None] * len(asked)
        for i, clip in zip(inside, clips):
            aligned[i] = clip
        return info, aligned
    return info, clips
