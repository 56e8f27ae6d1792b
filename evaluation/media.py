"""Reading and writing the media the evaluation touches: audio, images, videos.

Everything decodes through PyAV (it ships its own FFmpeg), so any container works and no
ffmpeg binary or shell is needed. Audio comes out as 16 kHz mono float32, video frames as upright RGB uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

SAMPLE_RATE = 16000


class MediaError(ValueError):
    """A media file cannot be decoded; the message names the file."""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any container, resampled to mono ``sample_rate``.

    Channels are averaged (FFmpeg's own down-mix would scale a stereo pair by 0.707 each, so
    a loud recording could exceed [-1, 1]).

    Returns:
        float32 ``(N,)``.
    """
    # Planar float keeps the channels apart: frame.to_ndarray() is (channels, samples).
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().mean(axis=0) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().mean(axis=0) for f in resampler.resample(None))
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: cannot decode audio: {err}") from err
    if not chunks:
        raise MediaError(f"{path}: the audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32)


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB array with the container's display rotation applied (PyAV leaves it to the caller)."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4  # counterclockwise quarter turns, as np.rot90 counts
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def load_video_frames(
    path: str | Path, fps: float, max_seconds: float | None = None
) -> tuple[np.ndarray, float]:
    """Frames of the first video stream sampled at ``fps``, upright.

    Each output time ``i / fps`` takes the latest decoded frame at or before it.

    Returns:
        ``(frames (F, H, W, 3) uint8, fps)``.
    """
    frames: list[np.ndarray] = []
    step = 1.0 / fps
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            latest: np.ndarray | None = None
            latest_t = 0.0
            for frame in container.decode(video=0):
                t = float(frame.time) if frame.time is not None else latest_t + step
                if max_seconds is not None and t >= max_seconds:
                    break
                while latest is not None and len(frames) * step < t:
                    frames.append(latest)
                latest, latest_t = _upright(frame), t
            if latest is not None and len(frames) * step <= latest_t:
                frames.append(latest)
    except (av.FFmpegError, OSError) as err:
        raise MediaError(f"{path}: cannot decode video: {err}") from err
    if not frames:
        raise MediaError(f"{path}: the video stream holds no frames")
    return np.stack(frames), fps


def resize_center_crop(image: np.ndarray, size: int, resample: int = Image.BICUBIC) -> np.ndarray:
    """Resize the shorter side to ``size`` and cut the central ``size x size`` square.

    The model input transform of the evaluation. Label maps go through the same geometry with
    ``resample=Image.NEAREST`` so class ids are never blended.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``. Returns: ``(size, size[, C])`` of the same dtype.
    """
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if image.dtype == np.uint8:
        pil = Image.fromarray(image)
    else:
        pil = Image.fromarray(image.astype(np.int32))  # 32-bit integer mode "I"
    resized = np.asarray(pil.resize((new_w, new_h), resample=resample)).astype(image.dtype)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def write_mp4(
    path: str | Path,
    frames: Sequence[np.ndarray],
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Encode RGB frames as H.264 (yuv420p) with optional mono AAC audio into an MP4.

    Args:
        frames: ``F`` arrays ``(H, W, 3)`` uint8 of one size (odd sizes are cropped by one pixel).
        audio: float32 ``(N,)`` mono at ``sample_rate``, or None for a silent video.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    h, w = h - h % 2, w - w % 2
    rate = Fraction(fps).limit_denominator(1000)
    with av.open(str(path), mode="w") as out:
        vstream = out.add_stream("libx264", rate=rate)
        vstream.width, vstream.height, vstream.pix_fmt = w, h, "yuv420p"
        astream = (
            out.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
        )
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:h, :w]), format="rgb24")
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        if astream is not None:
            samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
            chunk = 1024  # the AAC frame size
            for start in range(0, samples.shape[1], chunk):
                aframe = av.AudioFrame.from_ndarray(
                    samples[:, start : start + chunk], format="flt", layout="mono"
                )
                aframe.sample_rate = sample_rate
                aframe.pts = start
                out.mux(astream.encode(aframe))
            out.mux(astream.encode(None))
    return path
