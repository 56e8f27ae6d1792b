"""The training-sample contract (DESIGN.md 3.1), encoded, validated and decoded in one place.

A sample in a shard is a group of tar members sharing a key (no '.' or '/' in the key):

- ``{key}.flac``: mono 16 kHz audio, exactly :data:`CLIP_SAMPLES` samples (shorter clips are
  zero-padded by :func:`encode_sample`; ``meta["valid_samples"]`` says how many are real).
- ``{key}.frame0.jpg`` ... ``{key}.frame{N-1}.jpg``: the frames sampled from the clip.
- ``{key}.json``: metadata (see :data:`META_TYPES`); ``source`` is required, ``valid_samples`` and
  ``num_frames`` are filled in by the encoder.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image

SAMPLE_RATE = 16000
CLIP_SECONDS = 10.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
JPEG_QUALITY = 90
FORMAT_VERSION = 1

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
_FRAME_RE = re.compile(r"^frame(\d+)\.jpg$")

# Optional metadata fields and the JSON types they must have when present.
META_TYPES: dict[str, tuple[type, ...]] = {
    "source": (str,),
    "id": (str,),
    "url": (str,),
    "clip_start": (int, float),
    "clip_duration": (int, float),
    "valid_samples": (int,),
    "num_frames": (int,),
    "frame_times": (list,),
    "labels": (list,),
    "caption": (str,),
    "words": (list,),
    "producer": (str, dict),
}

Frame = np.ndarray | bytes


class SampleError(ValueError):
    """A sample breaks the contract; names the sample key and the field at fault."""

    def __init__(self, key: str | None, field: str, message: str):
        self.key = key
        self.field = field
        super().__init__(f"sample {key!r}: field {field!r}: {message}")


def check_key(key: Any) -> str:
    """Return ``key`` if it is a valid sample key (letters, digits, '_' and '-'), else raise."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise SampleError(
            key if isinstance(key, str) else repr(key),
            "__key__",
            "a key must be a non-empty string of letters, digits, '_' or '-' (no '.' or '/')",
        )
    return key


def _encode_audio(key: str, audio: Any) -> tuple[bytes, int]:
    arr = np.asarray(audio)
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise SampleError(key, "flac", f"audio must be mono (N,), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise SampleError(key, "flac", f"audio must be float in [-1, 1], got dtype {arr.dtype}")
    n = arr.shape[0]
    if n == 0 or n > CLIP_SAMPLES:
        raise SampleError(key, "flac", f"audio must have 1..{CLIP_SAMPLES} samples, got {n}")
    if not np.all(np.isfinite(arr)):
        raise SampleError(key, "flac", "audio contains NaN or infinite values")
    padded = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    # FLAC stores 16-bit PCM: values outside [-1, 1] would wrap, so they are clipped.
    padded[:n] = np.clip(arr, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, padded, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue(), n


def _encode_frame(key: str, index: int, frame: Frame) -> bytes:
    field = f"frame{index}.jpg"
    if isinstance(frame, (bytes, bytearray, memoryview)):
        data = bytes(frame)
        _check_jpeg(key, field, data)
        return data
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) == 0:
        raise SampleError(
            key,
            field,
            f"a frame must be uint8 (H, W, 3) or JPEG bytes, got {arr.dtype} {arr.shape}",
        )
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _check_jpeg(key: str, field: str, data: bytes) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise SampleError(key, field, f"expected JPEG data, got {im.format}")
            return im.size
    except SampleError:
        raise
    except Exception as exc:  # PIL raises several unrelated types for bad data
        raise SampleError(key, field, f"not a readable JPEG image ({exc})") from exc


def _check_meta(key: str, meta: Mapping[str, Any], num_frames: int | None) -> None:
    if not isinstance(meta, Mapping):
        raise SampleError(key, "json", f"metadata must be a dict, got {type(meta).__name__}")
    if not isinstance(meta.get("source"), str) or not meta["source"]:
        raise SampleError(key, "json.source", "metadata needs 'source' (the corpus name)")
    for name, types in META_TYPES.items():
        value = meta.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join(t.__name__ for t in types)
            raise SampleError(key, f"json.{name}", f"must be {wanted}, got {type(value).__name__}")
    valid = meta.get("valid_samples")
    if valid is not None and not 0 < valid <= CLIP_SAMPLES:
        raise SampleError(key, "json.valid_samples", f"must be in 1..{CLIP_SAMPLES}, got {valid}")
    times = meta.get("frame_times")
    if times is not None and num_frames is not None and len(times) != num_frames:
        raise SampleError(
            key, "json.frame_times", f"has {len(times)} entries for {num_frames} frames"
        )
    for i, word in enumerate(meta.get("words") or []):
        if not (
            isinstance(word, Mapping)
            and isinstance(word.get("word"), str)
            and all(isinstance(word.get(k), (int, float)) for k in ("start", "end"))
        ):
            raise SampleError(
                key, f"json.words[{i}]", 'must be {"word": str, "start": s, "end": s}'
            )


def encode_sample(
    key: str, audio: np.ndarray, frames: Sequence[Frame], meta: Mapping[str, Any]
) -> dict[str, bytes]:
    """Encode one training sample into the tar members of the contract.

    Args:
        key: sample key: letters, digits, '_' or '-' (unique within the dataset).
        audio: float mono waveform at 16 kHz, shape ``(N,)`` with ``1 <= N <= 160000``; zero-padded
            to 160000 samples. ``meta["valid_samples"]`` defaults to ``N`` (pass a smaller value if
            the tail of ``audio`` is already padding).
        frames: at least one frame, each ``uint8 (H, W, 3)`` RGB or already-encoded JPEG bytes.
        meta: JSON-serialisable metadata with at least ``source``; see :data:`META_TYPES`.

    Returns:
        ``{"__key__": key, "flac": ..., "frame0.jpg": ..., ..., "json": ...}`` (values are bytes
        except ``__key__``), ready for :class:`shards.writer.ShardWriter`.

    Raises:
        SampleError: naming the key and the field that breaks the contract.
    """
    key = check_key(key)
    if isinstance(frames, (bytes, np.ndarray)) or len(frames) == 0:
        raise SampleError(key, "frame0.jpg", "need a non-empty list of frames")
    flac, n = _encode_audio(key, audio)
    sample: dict[str, Any] = {"__key__": key, "flac": flac}
    for i, frame in enumerate(frames):
        sample[f"frame{i}.jpg"] = _encode_frame(key, i, frame)
    full_meta = dict(meta)
    full_meta.setdefault("valid_samples", n)
    full_meta["num_frames"] = len(frames)
    _check_meta(key, full_meta, len(frames))
    if full_meta["valid_samples"] > n:
        raise SampleError(
            key, "json.valid_samples", f"{full_meta['valid_samples']} exceeds the {n} samples given"
        )
    try:
        sample["json"] = json.dumps(full_meta, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SampleError(key, "json", f"metadata is not JSON-serialisable ({exc})") from exc
    return sample


def frame_fields(raw: Mapping[str, Any]) -> list[str]:
    """The ``frame{i}.jpg`` field names of a raw sample in index order."""
    found = sorted((int(m.group(1)), f) for f in raw if (m := _FRAME_RE.match(f)))
    return [f for _, f in found]


def validate_sample(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check an encoded sample against the contract without decoding its payloads.

    Reads the FLAC header (rate, channels, length) and the JPEG headers only, so it is cheap.

    Returns:
        The parsed metadata dict.

    Raises:
        SampleError: naming the key and the field at fault.
    """
    key = check_key(raw.get("__key__"))
    allowed = {"__key__", "flac", "json"}
    frames = frame_fields(raw)
    if not frames:
        raise SampleError(key, "frame0.jpg", "sample has no frames")
    if frames != [f"frame{i}.jpg" for i in range(len(frames))]:
        raise SampleError(key, "frame*.jpg", f"frames must be numbered 0..N-1, got {frames}")
    extra = set(raw) - allowed - set(frames) - {"__url__", "__local_path__"}
    if extra:
        raise SampleError(key, min(extra), f"unexpected fields {sorted(extra)}")
    for field in ("flac", "json"):
        if not isinstance(raw.get(field), (bytes, bytearray)):
            raise SampleError(key, field, "missing or not bytes")
    try:
        info = sf.info(io.BytesIO(raw["flac"]))
    except Exception as exc:
        raise SampleError(key, "flac", f"not readable audio ({exc})") from exc
    if info.format != "FLAC" or info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise SampleError(
            key,
            "flac",
            f"need mono FLAC at {SAMPLE_RATE} Hz, got {info.format} "
            f"{info.samplerate} Hz x{info.channels}",
        )
    if info.frames != CLIP_SAMPLES:
        raise SampleError(key, "flac", f"need {CLIP_SAMPLES} samples, got {info.frames}")
    for field in frames:
        if not isinstance(raw[field], (bytes, bytearray)):
            raise SampleError(key, field, "not bytes")
        _check_jpeg(key, field, bytes(raw[field]))
    try:
        meta = json.loads(raw["json"])
    except ValueError as exc:
        raise SampleError(key, "json", f"not valid JSON ({exc})") from exc
    _check_meta(key, meta, len(frames))
    if meta.get("valid_samples") is None:
        raise SampleError(key, "json.valid_samples", "missing")
    return meta


def decode_sample(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Decode the tar members of one sample.

    Returns:
        ``{"__key__": str, "audio": float32 (160000,), "frames": [uint8 (H, W, 3), ...],
        "meta": dict}`` plus ``"__url__"`` (the shard) when the input carries it.

    Raises:
        SampleError: naming the key and the field that cannot be decoded.
    """
    key = raw.get("__key__")
    key = key if isinstance(key, str) else repr(key)
    try:
        audio, rate = sf.read(io.BytesIO(raw["flac"]), dtype="float32", always_2d=False)
    except Exception as exc:
        raise SampleError(key, "flac", f"cannot decode audio ({exc})") from exc
    if rate != SAMPLE_RATE or audio.shape != (CLIP_SAMPLES,):
        raise SampleError(
            key,
            "flac",
            f"need ({CLIP_SAMPLES},) at {SAMPLE_RATE} Hz, got {audio.shape} at {rate} Hz",
        )
    names = frame_fields(raw)
    if not names:
        raise SampleError(key, "frame0.jpg", "sample has no frames")
    frames = []
    for name in names:
        try:
            with Image.open(io.BytesIO(raw[name])) as im:
                frames.append(np.array(im.convert("RGB")))
        except Exception as exc:
            raise SampleError(key, name, f"cannot decode JPEG ({exc})") from exc
    try:
        meta = json.loads(raw["json"])
    except Exception as exc:
        raise SampleError(key, "json", f"cannot decode metadata ({exc})") from exc
    out = {"__key__": key, "audio": audio, "frames": frames, "meta": meta}
    if "__url__" in raw:
        out["__url__"] = raw["__url__"]
    return out
