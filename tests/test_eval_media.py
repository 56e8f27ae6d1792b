"""Media reading and writing for the evaluation: real files through PyAV and the ffmpeg binary."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from evaluation.media import MediaError, load_audio, load_video_frames, write_mp4


def test_load_audio_resamples_stereo_44k_to_16k_mono(tmp_path):
    rate, seconds = 44100, 1.5
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, left], axis=1), rate)
    audio = load_audio(tmp_path / "stereo.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000 * seconds) < 200
    # Still a 440 Hz tone at about the same level.
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 440) < 5
    assert 0.4 < np.abs(audio[1000:-1000]).max() < 0.6


def test_load_audio_names_the_file_without_audio(tmp_path):
    video = write_mp4(tmp_path / "silent.mp4", [np.zeros((16, 16, 3), np.uint8)] * 4, 4.0)
    with pytest.raises(MediaError, match="silent.mp4: no audio stream"):
        load_audio(video)


def test_video_frames_are_sampled_at_fps_and_upright(tmp_path):
    frame = np.zeros((40, 80, 3), np.uint8)
    frame[:, :20] = 255  # a white stripe on the left of a landscape frame
    landscape = write_mp4(tmp_path / "land.mp4", [frame] * 8, 4.0)
    frames, fps = load_video_frames(landscape, fps=2.0)
    assert fps == 2.0 and len(frames) == 4 and frames.shape[1:] == (40, 80, 3)
    # A phone-style file: the same pixels with a 90-degree display rotation.
    rotated = tmp_path / "rot.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-display_rotation", "90",
           "-i", str(landscape), "-c", "copy", str(rotated)]  # fmt: skip
    subprocess.run(cmd, check=True)
    upright, _ = load_video_frames(rotated, fps=2.0)
    assert upright.shape[1:] == (80, 40, 3)
    # Turned counterclockwise, as ffmpeg displays it: the left stripe is now the bottom rows.
    assert upright[0, -10:, :, 0].mean() > 200 and upright[0, :10, :, 0].mean() < 50


def test_write_mp4_keeps_audio(tmp_path):
    tone = (0.3 * np.sin(2 * np.pi * 300 * np.arange(32000) / 16000)).astype(np.float32)
    video = write_mp4(tmp_path / "v.mp4", [np.full((33, 47, 3), 128, np.uint8)] * 10, 5.0, tone)
    frames, _ = load_video_frames(video, fps=5.0)
    assert frames.shape[1:] == (32, 46, 3)  # even sizes for yuv420p
    audio = load_audio(video)
    assert len(audio) >= 32000 and np.abs(audio).max() > 0.2
