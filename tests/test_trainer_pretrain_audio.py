"""Self-supervised audio backbone pretraining (trainer.pretrain_audio): its parts, and a real run on
shards of tone sequences whose saved backbone DenseAV then loads."""

import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from denseav.config import DenseAVConfig
from denseav.model import DenseAV, build_audio_backbone
from shards.format import CLIP_SAMPLES, SAMPLE_RATE, encode_sample
from shards.index import build_index
from shards.writer import ShardWriter
from trainer.pretrain_audio import (
    AudioCrop,
    kmeans,
    main,
    span_mask,
    target_geometry,
    token_descriptors,
)


def test_kmeans_finds_separated_blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.3 * torch.randn(200, 2, generator=g) for c in centres])
    found = kmeans(points, 3, 20, torch.Generator().manual_seed(1))
    nearest = torch.cdist(centres, found).min(dim=1).values
    assert nearest.max() < 0.2


def test_kmeans_needs_enough_points():
    with pytest.raises(ValueError, match="at least 5 points"):
        kmeans(torch.zeros(3, 2), 5, 3, torch.Generator())


def test_span_mask_masks_whole_spans_at_the_expected_rate():
    masked = span_mask(64, 500, 0.065, 10, torch.Generator().manual_seed(0))
    assert masked.shape == (64, 500) and masked.dtype == torch.bool
    expected = 1 - (1 - 0.065) ** 10  # a token is masked unless no span started in the 10 before
    assert abs(masked[:, 10:].float().mean().item() - expected) < 0.02
    one = span_mask(1, 50, 0.0, 10, torch.Generator())
    assert not one.any()
    runs = span_mask(1, 40, 1.0, 3, torch.Generator())
    assert runs.all()


def test_target_geometry_of_the_toy_and_tiny_backbones():
    toy = build_audio_backbone(DenseAVConfig.toy())
    assert target_geometry(toy) == (2, 4)  # 320-sample tokens spanning 880 samples: 4 frames
    tiny = build_audio_backbone(DenseAVConfig.tiny())
    assert target_geometry(tiny) == (2, 1)  # 320-sample tokens spanning 325 samples
    odd = DenseAVConfig.tiny()
    odd.audio_backbone_config = {**odd.audio_backbone_config, "conv_stride": [5, 8, 6]}
    with pytest.raises(ValueError, match="240 samples"):
        target_geometry(build_audio_backbone(odd))


def test_token_descriptors_put_each_tokens_frames_side_by_side():
    mel = torch.arange(2 * 9 * 3, dtype=torch.float32).view(2, 9, 3)
    out = token_descriptors(mel, tokens=4, stride=2, context=4)
    assert out.shape == (2, 4, 12)
    assert torch.equal(out[1, 1], mel[1, 2:6].flatten())
    assert torch.equal(out[0, 3], torch.cat([mel[0, 6], mel[0, 7], mel[0, 8], mel[0, 8]]))


def test_audio_crop_keeps_valid_audio_only():
    audio = np.concatenate([np.ones(1000, np.float32), np.zeros(500, np.float32)])
    sample = {"audio": audio, "meta": {"valid_samples": 1000}}
    crop = AudioCrop(400)(sample, np.random.default_rng(0))["audio"]
    assert crop.shape == (400,) and bool((crop == 1).all())
    short = AudioCrop(4000)(sample, np.random.default_rng(0))["audio"]
    assert short.shape == (1000,)


def _write_tone_shards(url: str, clips: int, seed: int) -> None:
    """Clips of 4-10 s made of 0.4 s tones, each one of four pitches: k-means finds the pitches and
    a masked tone is predictable from its neighbours only by a model that learned from them."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.4 * SAMPLE_RATE)) / SAMPLE_RATE
    with ShardWriter(url, 0, max_samples=clips) as writer:
        for i in range(clips):
            valid = int(rng.integers(4 * SAMPLE_RATE, CLIP_SAMPLES + 1))
            pitch = int(rng.integers(4))
            tones = []
            while sum(len(x) for x in tones) < valid:
                pitch = (pitch + 1) % 4 if rng.random() < 0.8 else pitch
                tones.append(0.3 * np.sin(2 * np.pi * (300 * 2**pitch) * t))
            audio = np.concatenate(tones)[:valid].astype(np.float32)
            audio += 0.01 * rng.standard_normal(valid).astype(np.float32)
            frame = np.full((32, 32, 3), 128, np.uint8)
            key = f"tones-{i:04d}"
            meta = {
                "source": "tones",
                "id": key,
                "clip_start": 0.0,
                "clip_duration": valid / SAMPLE_RATE,
                "frame_times": [0.0],
            }
            writer.write(encode_sample(key, audio, [frame], meta))
    build_index(url, name="tones")


def test_pretraining_learns_and_denseav_starts_from_the_saved_backbone(tmp_path):
    data = str(tmp_path / "tones")
    _write_tone_shards(data, clips=24, seed=0)
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"preset": "toy"}, "data": {"datasets": [{"url": data}]}})
    )
    out = tmp_path / "backbone"
    clusters = 8
    main(
        [
            "--config",
            str(config),
            "--out",
            str(out),
            "--steps",
            "120",
            "--batch-size",
            "8",
            "--crop-seconds",
            "2",
            "--clusters",
            str(clusters),
            "--kmeans-batches",
            "4",
            "--warmup-steps",
            "10",
            "--lr",
            "2e-3",
            "--num-workers",
            "0",
        ]
    )

    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["target_frames"] == {"stride": 2, "context": 4, "mels": 64}
    curve = summary["curve"]
    assert curve[-1]["step"] == 120
    # Chance is ln(8) = 2.08 for a uniform guess; the tone pattern makes masked tokens predictable.
    assert curve[-1]["loss"] < 0.6 * math.log(clusters), curve
    assert curve[-1]["accuracy"] > 0.6, curve

    saved = load_file(out / "model.safetensors")
    assert not any("masked_spec_embed" in name for name in saved)
    model = DenseAV(DenseAVConfig.toy(audio_backbone=str(out)))
    state = model.audio_backbone.state_dict()
    for name, value in saved.items():
        assert torch.equal(state[name], value), name
