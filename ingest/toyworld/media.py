"""Deterministic encoders for the toy world's files: JPEG, 16-bit WAV, ADE20K-style _seg.png, and
MP4 (H.264 + AAC through the imageio-ffmpeg binary, single-threaded with bit-exact flags so
the same input always gives the same bytes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image


def write_jpeg(path: Path, image: np.ndarray, quality: int = 92) -> None:
    """Write an (H, W, 3) uint8 image as a baseline JPEG without metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, "RGB").save(path, format="JPEG", quality=quality)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio (N,) in [-1, 1] as mono 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, sample_rate, subtype="PCM_16", format="WAV")


def encode_ade_seg(classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """ADE20K's _seg.png colours (H, W, 3) uint8: R = class // 256 * 10, G = class % 256,
    B = instance id; so that class = R / 10 * 256 + G."""
    classes = classes.astype(np.int64)
    if classes.max(initial=0) >= 256 * 26:
        raise ValueError("class ids must be < 6656 to fit ADE20K's R channel")
    rgb = np.stack([classes // 256 * 10, classes % 256, instances.astype(np.int64)], axis=-1)
    return rgb.astype(np.uint8)


def write_seg_png(path: Path, classes: np.ndarray, instances: np.ndarray) -> None:
    """Write an ADE20K-style _seg.png for class ids (H, W) and instance ids (H, W)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(encode_ade_seg(classes, instances), "RGB").save(path, format="PNG")


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_mp4(
    path: Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray,
    audio_rate: int,
    out_audio_rate: int,
) -> None:
    """Encode frames (N, H, W, 3) uint8 at ``fps`` and mono float audio at ``audio_rate`` into
    an MP4 (H.264 yuv420p, AAC at ``out_audio_rate``), deterministically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _n, h, w, _ = frames.shape
    wav = path.with_name(path.name + ".audio.wav")
    tmp = path.with_name(path.name + ".part.mp4")
    write_wav(wav, audio, audio_rate)
    cmd = [
        ffmpeg_exe(),
        "-nostdin",
        "-y",
        "-v",
        "error",
        "-threads",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "pipe:0",
        "-i",
        str(wav),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-x264-params",
        "threads=1:lookahead-threads=1",
        "-c:a",
        "aac",
        "-b:a",
        "64k",
        "-ar",
        str(out_audio_rate),
        "-ac",
        "1",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-movflags",
        "+faststart",
        str(tmp),
    ]
    try:
        proc = subprocess.run(
            cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode()[-2000:]}")
        tmp.replace(path)
    finally:
        wav.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
