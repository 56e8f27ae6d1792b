"""The sample contract: encode, validate and decode, and refusals that name the field."""

import io
import json

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from shards.format import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    SampleError,
    decode_sample,
    encode_sample,
    validate_sample,
)


def _frame(rng, h=48, w=40):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def test_roundtrip_pads_audio_and_keeps_jpeg_bytes():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.9, 0.9, 100_000).astype(np.float32)
    jpeg = _jpeg(_frame(rng))
    raw = encode_sample(
        "clip_01",
        audio,
        [jpeg, _frame(rng, 32, 64)],
        {"source": "toy", "frame_times": [0.0, 5.0], "caption": "a dog"},
    )
    assert set(raw) == {"__key__", "flac", "frame0.jpg", "frame1.jpg", "json"}
    assert raw["frame0.jpg"] == jpeg  # already-encoded frames are stored unchanged
    meta = validate_sample(raw)
    assert meta["valid_samples"] == 100_000 and meta["num_frames"] == 2

    out = decode_sample(raw)
    assert out["__key__"] == "clip_01"
    assert out["audio"].dtype == np.float32 and out["audio"].shape == (CLIP_SAMPLES,)
    np.testing.assert_allclose(out["audio"][:100_000], audio, atol=1 / 32768 + 1e-7)
    assert not out["audio"][100_000:].any()
    assert [f.shape for f in out["frames"]] == [(48, 40, 3), (32, 64, 3)]
    assert out["frames"][0].dtype == np.uint8
    assert out["meta"]["caption"] == "a dog"
    info = sf.info(io.BytesIO(raw["flac"]))
    assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 1, CLIP_SAMPLES)


@pytest.mark.parametrize(
    "key, audio_len, frames, meta, field",
    [
        ("a.b", 1000, 1, {"source": "s"}, "__key__"),
        ("", 1000, 1, {"source": "s"}, "__key__"),
        ("k", CLIP_SAMPLES + 1, 1, {"source": "s"}, "flac"),
        ("k", 0, 1, {"source": "s"}, "flac"),
        ("k", 1000, 0, {"source": "s"}, "frame0.jpg"),
        ("k", 1000, 1, {}, "json.source"),
        ("k", 1000, 2, {"source": "s", "frame_times": [0.0]}, "json.frame_times"),
        ("k", 1000, 1, {"source": "s", "valid_samples": 2000}, "json.valid_samples"),
        ("k", 1000, 1, {"source": "s", "words": [{"word": "dog"}]}, "json.words[0]"),
        ("k", 1000, 1, {"source": "s", "labels": "dog"}, "json.labels"),
        ("k", 1000, 1, {"source": "s", "x": object()}, "json"),
    ],
)
def test_encode_refuses_with_field(key, audio_len, frames, meta, field):
    rng = np.random.default_rng(1)
    with pytest.raises(SampleError) as info:
        encode_sample(key, np.zeros(audio_len, np.float32), [_frame(rng)] * frames, meta)
    assert info.value.field == field
    assert repr(field) in str(info.value)


def test_encode_refuses_bad_arrays():
    rng = np.random.default_rng(2)
    ok = np.zeros(1000, np.float32)
    cases = [
        (np.zeros((2, 1000), np.float32), [_frame(rng)], "flac"),  # stereo
        (np.full(1000, np.nan, np.float32), [_frame(rng)], "flac"),  # NaN
        (np.zeros(1000, np.int16), [_frame(rng)], "flac"),  # not float
        (ok, [np.zeros((8, 8), np.uint8)], "frame0.jpg"),  # grey
        (ok, [_frame(rng), np.zeros((8, 8, 3), np.float32)], "frame1.jpg"),
        (ok, [b"not a jpeg"], "frame0.jpg"),
    ]
    for audio, frames, field in cases:
        with pytest.raises(SampleError) as info:
            encode_sample("k", audio, frames, {"source": "s"})
        assert info.value.field == field, (field, str(info.value))
        assert "'k'" in str(info.value)


def test_validate_and_decode_name_the_broken_field():
    rng = np.random.default_rng(3)
    raw = encode_sample("k9", np.zeros(1000, np.float32), [_frame(rng)], {"source": "s"})
    short = io.BytesIO()
    sf.write(short, np.zeros(100, np.float32), SAMPLE_RATE, format="FLAC")
    broken = [
        ({**raw, "flac": short.getvalue()}, "flac"),
        ({**raw, "flac": b"garbage"}, "flac"),
        ({**raw, "frame0.jpg": b"\xff\xd8 truncated"}, "frame0.jpg"),
        ({**raw, "json": b"{not json"}, "json"),
        ({k: v for k, v in raw.items() if k != "frame0.jpg"}, "frame0.jpg"),
        ({**raw, "extra.txt": b"x"}, "extra.txt"),
        ({**raw, "json": json.dumps({"source": "s"}).encode()}, "json.valid_samples"),
    ]
    for sample, field in broken:
        with pytest.raises(SampleError) as info:
            validate_sample(sample)
        assert info.value.field == field and info.value.key == "k9"
    for sample, field in broken[:4]:
        with pytest.raises(SampleError) as info:
            decode_sample(sample)
        assert info.value.field == field and "'k9'" in str(info.value)
