"""The inference command: eval mode, PNG overlays for images, MP4 (with audio) for videos."""

import av
import numpy as np
import pytest
import torch
from PIL import Image

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from evaluation.media import SAMPLE_RATE, load_audio, load_video_frames, write_mp4
from evaluation.predict import main, moment_windows, predict_image


def _dropout_model() -> DenseAV:
    """A tiny model whose backbones drop half their activations in training mode."""
    base = DenseAVConfig.tiny()
    image_arch = dict(
        base.image_backbone_config, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5
    )
    audio_arch = dict(
        base.audio_backbone_config,
        hidden_dropout=0.5,
        attention_dropout=0.5,
        activation_dropout=0.5,
    )
    torch.manual_seed(0)
    return DenseAV(base.replace(image_backbone_config=image_arch, audio_backbone_config=audio_arch))


def _scene(size: int = 40) -> np.ndarray:
    image = np.full((size, size + 8, 3), 90, np.uint8)
    image[8:24, 10:30] = (220, 35, 35)
    return image


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _dropout_model().save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def test_predict_runs_in_eval_mode():
    model = _dropout_model().train()
    image, audio = _scene(), _tone(2.0)
    pixels = torch.rand(1, 3, 32, 32)
    # Training mode: dropout active (two passes differ) and 2x2 pooled image features.
    a, b = model.encode_image(pixels), model.encode_image(pixels)
    assert not torch.equal(a.features, b.features)
    assert a.features.shape[-1] == 2
    first, act = predict_image(model, image, audio, window=0.5)
    second, act2 = predict_image(model, image, audio, window=0.5)
    assert not model.training and not any(m.training for m in model.modules())
    np.testing.assert_array_equal(act.maps, act2.maps)
    np.testing.assert_array_equal(first, second)
    # Full-resolution features: 32 px / patch 8 = 4 (training mode would give 2).
    assert act.maps.shape == (1, 1 + len(moment_windows(2.0, 0.5)), 2, 4, 4)
    assert act.strength.shape[0] == 2


def test_image_and_audio_write_png(model_dir, tmp_path, capsys):
    image_path, audio_path = tmp_path / "scene.jpg", tmp_path / "prompt.mp4"
    Image.fromarray(_scene()).save(image_path)
    write_mp4(audio_path, [_scene()] * 4, 2.0, _tone(2.0))  # audio taken from any container
    out = tmp_path / "out"
    assert (
        main(
            [
                "--model",
                str(model_dir),
                "--image",
                str(image_path),
                "--audio",
                str(audio_path),
                "--out",
                str(out),
                "--window",
                "0.5",
                "--head-names",
                "sound,language",
            ]
        )
        == 0
    )
    png = out / "scene_heads.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 4 * 192
    assert str(png.resolve()) in capsys.readouterr().out


def test_video_writes_mp4_with_audio(model_dir, tmp_path):
    frames = [np.roll(_scene(), 2 * i, axis=1) for i in range(16)]
    video = write_mp4(tmp_path / "clip.mp4", frames, 8.0, _tone(2.0))
    out = tmp_path / "out"
    assert (
        main(["--model", str(model_dir), "--video", str(video), "--out", str(out), "--fps", "4"])
        == 0
    )
    result = out / "clip_heads.mp4"
    with av.open(str(result)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "video"]
    decoded, _ = load_video_frames(result, fps=4)
    assert len(decoded) >= 7 and decoded.shape[1] > 384
    sound = load_audio(result)
    assert len(sound) >= 1.8 * SAMPLE_RATE and np.abs(sound).max() > 0.1


def test_cli_requires_one_input_kind(model_dir):
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--image", "x.jpg"])
    with pytest.raises(SystemExit):
        main(["--model", str(model_dir), "--video", "v.mp4", "--audio", "a.wav"])


def test_missing_or_silent_input_is_a_clear_error(model_dir, tmp_path, capsys):
    assert main(["--model", str(model_dir), "--video", str(tmp_path / "none.mp4")]) == 2
    assert "none.mp4" in capsys.readouterr().err
    silent = write_mp4(tmp_path / "silent.mp4", [_scene()] * 4, 4.0)
    assert main(["--model", str(model_dir), "--video", str(silent), "--out", str(tmp_path)]) == 2
    assert "silent.mp4: no audio stream" in capsys.readouterr().err
