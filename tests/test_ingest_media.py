"""The media layer on odd inputs made by the real ffmpeg: codecs, containers, layouts, rates,
variable frame rate, rotation, short, silent, video-less, empty, truncated and non-media files."""

from __future__ import annotations

import io
import shutil
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from ingest.media import MediaError, MediaOptions, decode_clips, read_image
from ingest.synthetic import MediaSpec, ffmpeg_exe, make_media, truncate

ODD = {
    "h264_aac.mp4": MediaSpec(seconds=3),
    "vp9_opus.webm": MediaSpec(
        video_codec="libvpx-vp9",
        audio_codec="libopus",
        sample_rate=48000,
        extra_args=("-deadline", "realtime", "-cpu-used", "8"),
    ),
    "mpeg4_mp3.mkv": MediaSpec(video_codec="mpeg4", audio_codec="libmp3lame", sample_rate=22050),
    "h264_pcm8k_mono.mkv": MediaSpec(audio_codec="pcm_s16le", sample_rate=8000, channels=1),
    "surround51_48k.mp4": MediaSpec(channels=6, sample_rate=48000),
    "vorbis_vp8.webm": MediaSpec(video_codec="libvpx", audio_codec="libvorbis", sample_rate=32000),
}


def _jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _peak_hz(audio: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spectrum) * rate / audio.size)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    for name, spec in ODD.items():
        make_media(folder / name, spec)
    return folder


@pytest.mark.parametrize("name", sorted(ODD))
def test_codecs_containers_layouts_rates(media_dir, name):
    spec = ODD[name]
    info, clips = decode_clips(media_dir / name, MediaOptions(frames_per_clip=2, short_side=120))
    assert info.channels == spec.channels and info.source_sample_rate == spec.sample_rate
    assert len(clips) == 1
    clip = clips[0]
    assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
    assert clip.audio.size == round(clip.duration * 16000)
    assert abs(clip.duration - spec.seconds) < 0.1
    assert abs(_peak_hz(clip.audio) - spec.tone_hz) < 3.0
    assert 0.02 < np.sqrt(np.mean(clip.audio**2)) < 0.5
    assert len(clip.frames) == 2 and len(clip.frame_times) == 2
    for frame in clip.frames:
        assert _jpeg(frame).shape == (120, 160, 3)


def test_long_input_splits_into_clips_or_first_only(tmp_path):
    path = make_media(tmp_path / "long.mp4", MediaSpec(seconds=23.5, width=160, height=120))
    _, clips = decode_clips(path)
    assert [c.start for c in clips] == [0.0, 10.0, 20.0]
    assert [c.audio.size for c in clips[:2]] == [160000, 160000]
    assert abs(clips[2].duration - 3.5) < 0.05
    for c in clips:
        assert all(c.start <= t < c.start + 10 for t in c.frame_times)
    _, first = decode_clips(path, MediaOptions(max_clips=1))
    assert len(first) == 1 and np.array_equal(first[0].audio, clips[0].audio)


def test_window_cut_is_sample_accurate_after_seek(tmp_path):
    # Silence, then a tone from 12.5 s: the window (10, 20) must see the onset 2.5 s in.
    spec = MediaSpec(
        seconds=30, width=160, height=120, audio_expr="if(gte(t,12.5),0.5*sin(2*PI*440*t),0)"
    )
    path = make_media(tmp_path / "onset.mp4", spec)
    _, (clip,) = decode_clips(path, windows=[(10.0, 20.0)])
    assert clip.start == 10.0 and clip.audio.size == 160000
    onset = int(np.argmax(np.abs(clip.audio) > 0.01))
    assert abs(onset - 40000) < 80  # within 5 ms


def test_window_past_the_end_is_short_or_rejected(tmp_path):
    path = make_media(tmp_path / "six.mp4", MediaSpec(seconds=6, width=160, height=120))
    _, (clip,) = decode_clips(path, windows=[(2.0, 12.0)])
    assert abs(clip.duration - 4.0) < 0.05
    _, clips = decode_clips(path, windows=[(7.0, 17.0), (0.0, 3.0)])
    assert clips[0] is None and abs(clips[1].duration - 3.0) < 0.01
    with pytest.raises(MediaError) as err:
        decode_clips(path, windows=[(7.0, 17.0)])
    assert err.value.reason == "window_out_of_range"


@pytest.mark.parametrize(
    "name, spec",
    [
        (
            "vfr.mp4",
            MediaSpec(
                seconds=6, width=64, height=64, counter_picture=True, variable_frame_rate=True
            ),
        ),
        (
            "vfr_gop7_bframes.mp4",
            MediaSpec(
                seconds=8,
                width=64,
                height=64,
                counter_picture=True,
                variable_frame_rate=True,
                extra_args=("-g", "7", "-bf", "2"),
            ),
        ),
        (
            "gop12_bframes.mp4",
            MediaSpec(
                seconds=24,
                width=64,
                height=64,
                counter_picture=True,
                extra_args=("-g", "12", "-bf", "3"),
            ),
        ),
        (
            "gop12.webm",
            MediaSpec(
                seconds=24,
                width=64,
                height=64,
                counter_picture=True,
                video_codec="libvpx-vp9",
                audio_codec="libopus",
                sample_rate=48000,
                extra_args=("-g", "12", "-deadline", "realtime", "-cpu-used", "8"),
            ),
        ),
    ],
)
def test_frames_are_those_on_screen_at_their_times(tmp_path, name, spec):
    """Irregular frame times and short groups of pictures (only those holding a target are
    decoded): every frame equals the one a plain full decode shows at that time."""
    path = make_media(tmp_path / name, spec)
    with av.open(str(path)) as container:
        ref = [(f.time, f.to_ndarray(format="rgb24").mean()) for f in container.decode(video=0)]
    if spec.variable_frame_rate:
        gaps = np.diff([t for t, _ in ref])
        assert gaps.max() > 2 * np.median(gaps), "the test file should have irregular frame times"
    for windows in (None, [(3.3, 5.3)], [(spec.seconds - 4.95, spec.seconds)]):
        _, clips = decode_clips(path, MediaOptions(frames_per_clip=7), windows)
        for clip in clips:
            for t, jpeg in zip(clip.frame_times, clip.frames):
                expected = max(i for i, (time, _) in enumerate(ref) if time <= t)
                assert abs(_jpeg(jpeg).mean() - ref[expected][1]) < 1.0, (windows, t, expected)


def test_rotation_metadata_is_applied_like_ffmpeg(tmp_path):
    path = make_media(tmp_path / "rot.mp4", MediaSpec(seconds=2, rotation=90))
    info, (clip,) = decode_clips(path, MediaOptions(frames_per_clip=1, short_side=1000))
    assert info.rotation == 90
    ours = _jpeg(clip.frames[0]).astype(int)
    assert ours.shape == (320, 240, 3)  # stored landscape, shown portrait
    # ffmpeg rotates on decode by default; take the frame on screen at the same time.
    t = clip.frame_times[0] - 0.02
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-ss",
        f"{t:.3f}",
        "-i",
        str(path),
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(320, 240, 3).astype(int)
    assert np.abs(ours - ref).mean() < 15
    assert np.abs(np.rot90(ours, 2) - ref).mean() > 3 * np.abs(ours - ref).mean()


def test_short_clip_keeps_its_true_length(tmp_path):
    path = make_media(tmp_path / "short.mp4", MediaSpec(seconds=2.5, width=160, height=120))
    _, (clip,) = decode_clips(path)
    assert abs(clip.duration - 2.5) < 0.05 and clip.audio.size == round(clip.duration * 16000)
    assert all(0 <= t < clip.duration for t in clip.frame_times)


def test_audio_only_input_fails_or_passes_by_policy(tmp_path):
    path = make_media(tmp_path / "song.mp3", MediaSpec(video_codec=None, audio_codec="libmp3lame"))
    with pytest.raises(MediaError) as err:
        decode_clips(path)
    assert err.value.reason == "no_video_stream" and "song.mp3" in err.value.detail
    _, (clip,) = decode_clips(path, MediaOptions(audio_only=True))
    assert clip.frames == [] and abs(clip.duration - 3.0) < 0.1


@pytest.mark.parametrize(
    "name, make, reason",
    [
        (
            "silent.mp4",
            lambda p: make_media(p, MediaSpec(audio_codec=None, width=160, height=120)),
            "no_audio_stream",
        ),
        ("empty.mp4", lambda p: p.write_bytes(b""), "empty_file"),
        ("notes.mp4", lambda p: p.write_text("not a video at all\n" * 50), "not_media"),
        (
            "moov_at_end.mp4",
            lambda p: truncate(make_media(p, MediaSpec(seconds=4)), 0.5),
            "corrupt",
        ),
        (
            "faststart.mp4",
            lambda p: truncate(
                make_media(p, MediaSpec(seconds=8, extra_args=("-movflags", "+faststart"))), 0.5
            ),
            "truncated",
        ),
    ],
)
def test_unusable_inputs_fail_with_a_reason(tmp_path, name, make, reason):
    path = tmp_path / name
    make(path)
    with pytest.raises(MediaError) as err:
        decode_clips(path)
    assert err.value.reason == reason
    assert name in err.value.detail


def test_missing_file(tmp_path):
    with pytest.raises(MediaError) as err:
        decode_clips(tmp_path / "gone.mp4")
    assert err.value.reason == "missing_file"


def test_read_image_applies_exif_orientation_and_scales(tmp_path):
    img = Image.new("RGB", (400, 200), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    img.save(tmp_path / "photo.jpg", exif=exif)
    out = _jpeg(read_image(tmp_path / "photo.jpg", MediaOptions(short_side=100)))
    assert out.shape == (200, 100, 3)
    shutil.copy(tmp_path / "photo.jpg", tmp_path / "broken.jpg")
    truncate(tmp_path / "broken.jpg", 0.1)
    with pytest.raises(MediaError) as err:
        read_image(tmp_path / "broken.jpg", MediaOptions())
    assert err.value.reason == "bad_image"
