"""Small real media files made with ffmpeg, for the ingest tests and benchmark.

Every file is encoded by the real ffmpeg (imageio-ffmpeg's static binary): lavfi test
sources (`testsrc2` pictures, `sine` tones) through real encoders into real containers, so
the decoders meet the same bitstreams they meet on the web.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import imageio_ffmpeg


@dataclass(frozen=True)
class MediaSpec:
    """What to encode (`video_codec=None`: audio only; `audio_codec=None`: no sound)."""

    seconds: float = 3.0
    video_codec: str | None = "libx264"
    audio_codec: str | None = "aac"
    width: int = 320
    height: int = 240
    fps: float = 25.0
    sample_rate: int = 44100
    channels: int = 2
    tone_hz: float = 440.0
    audio_expr: str | None = None  # an aevalsrc expression of t (replaces the sine tone)
    counter_picture: bool = (
        False  # frame n is flat grey with luma 16 + 2 (n mod 110): neighbours differ
    )
    variable_frame_rate: bool = False
    rotation: int = 0
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (no ffmpeg on PATH is needed)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str]) -> None:
    """Run ffmpeg with an argument list (never a shell string); raise with its stderr on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({' '.join(args[-1:])}): {done.stderr.strip()[-2000:]}")


def make_media(path: str | Path, spec: MediaSpec = MediaSpec()) -> Path:
    """Encode `spec` into `path`; the container follows the file extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args: list[str] = []
    if spec.video_codec is not None:
        size = f"size={spec.width}x{spec.height}:rate={spec.fps}:duration={spec.seconds}"
        if spec.counter_picture:
            video = f"nullsrc={size},format=yuv420p,geq=lum='16+2*mod(N,110)':cb=128:cr=128"
        else:
            video = f"testsrc2={size}"
        args += ["-f", "lavfi", "-i", video]
    if spec.audio_codec is not None:
        timing = f"sample_rate={spec.sample_rate}:duration={spec.seconds}"
        if spec.audio_expr is not None:
            sound = f"aevalsrc='{spec.audio_expr}':{timing}"
        else:
            sound = f"sine=frequency={spec.tone_hz}:{timing}"
        args += ["-f", "lavfi", "-i", sound]
    if spec.video_codec is not None:
        args += ["-c:v", spec.video_codec, "-pix_fmt", "yuv420p"]
        if spec.variable_frame_rate:
            # Frames 0-49 at the nominal rate, then a slower rate: irregular timestamps.
            slow = f"if(lt(N,50),N/{spec.fps},50/{spec.fps}+(N-50)/({spec.fps}/3))/TB"
            args += ["-vf", f"setpts='{slow}'", "-fps_mode", "passthrough"]
    if spec.audio_codec is not None:
        args += ["-c:a", spec.audio_codec, "-ac", str(spec.channels), "-ar", str(spec.sample_rate)]
    args += [*spec.extra_args, "-t", str(spec.seconds), str(path)]
    run_ffmpeg(args)
    if spec.rotation:
        rotated = path.with_name(f"rotating-{path.name}")
        run_ffmpeg(
            ["-display_rotation", str(spec.rotation), "-i", str(path), "-c", "copy", str(rotated)]
        )
        rotated.replace(path)
    return path


def truncate(path: str | Path, keep_fraction: float) -> Path:
    """Keep the first `keep_fraction` of a file's bytes, as an interrupted download leaves it."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path
