"""Self-supervised pretraining of a from-scratch audio backbone (HuBERT's first iteration).

DenseAV fine-tunes a *pretrained* HuBERT (paper section 3.3). A backbone built from a small
architecture dict (``DenseAVConfig.toy()``) has no weights to load; this command gives it some from
the training shards' own audio, without labels:

1. **Targets.** Log-mel frames (25 ms windows every 10 ms, each clip standardised) describe every
   backbone token by the frames its receptive field spans; k-means over the tokens of the first
   batches gives the codebook, and a token's target is its nearest centroid (HuBERT clusters MFCC
   frames in its first iteration).
2. **Masked prediction.** Spans of tokens are replaced by a learned mask embedding after the
   backbone's feature encoder, and a linear head predicts the targets of the masked tokens of
   valid audio (cross-entropy).
3. **Output.** The backbone is saved with ``save_pretrained`` (mask embedding and head dropped)
   with ``pretrain.json`` (settings, codebook sizes, loss curve); set ``model.audio_backbone: DIR``
   in the training config to start DenseAV from it.

    python -m trainer.pretrain_audio --config configs/toy_demo.yaml --out DIR --steps 3000

The backbone is the one the training config's ``model`` section builds (its preset and
overrides), and the audio comes from the config's ``data.datasets`` (mixed by their weights) unless
``--data`` names other shard folders or ``s3://`` prefixes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from denseav.audio import SAMPLE_RATE, downsample_mask, min_input_length, normalize_waveform
from denseav.backbones import feature_encoder_layers
from denseav.front_end import LogMelFilterbank
from denseav.model import build_audio_backbone
from shards.loader import Source, build_train_loader
from trainer.data import dataset_sources, valid_audio
from trainer.main import build_model_config
from trainer.params import _help, load_config

log = logging.getLogger("trainer.pretrain_audio")

TARGET_WINDOW = 400  # samples: the 25 ms log-mel window of the targets
TARGET_HOP = 160  # samples: 10 ms
TARGET_MELS = 64


@dataclass
class PretrainConfig:
    """Settings of one pretraining run; every default works on the toy world."""

    out: str = _help("Folder the pretrained backbone is saved to.")
    config: str = _help("Training config (YAML) whose model section and datasets are used.")
    data: list[str] = _help(
        "Shard folders or s3:// prefixes to read audio from, in equal shares (repeat the option); "
        "default: the config's data.datasets.",
        default_factory=list,
    )
    steps: int = _help("Optimizer steps of masked prediction.", default=3000)
    batch_size: int = _help("Audio crops per step.", default=16)
    crop_seconds: float = _help("Longest crop of each clip's valid audio (seconds).", default=4.0)
    clusters: int = _help("k-means clusters: the targets' vocabulary.", default=100)
    kmeans_batches: int = _help("Batches whose tokens the codebook is fitted on.", default=40)
    kmeans_iterations: int = _help("Lloyd iterations of the k-means.", default=30)
    mask_start_prob: float = _help(
        "Probability that a masked span starts at a token (0.065 with spans of 10 masks ~0.45 of the tokens).",
        default=0.065,
    )
    mask_span: int = _help("Tokens per masked span.", default=10)
    lr: float = _help(
        "AdamW peak learning rate (linear warm-up, then linear decay to 0).", default=5e-4
    )
    warmup_steps: int = _help("Steps of linear learning-rate warm-up.", default=100)
    weight_decay: float = _help("AdamW weight decay.", default=0.01)
    clip_grad: float = _help("Gradient norm clip.", default=10.0)
    num_workers: int = _help("Data-loading worker processes.", default=2)
    seed: int = _help("Seed of the data order, codebook, masks and head.", default=0)


class AudioCrop:
    """``(decoded sample, rng) -> {"audio": (n,) float32}``: a random crop of the valid audio.

    A plain object (not a closure) so it pickles to the loader's worker processes.
    """

    def __init__(self, samples: int) -> None:
        self.samples = samples

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        audio, valid = valid_audio(sample)
        start = int(rng.integers(0, valid - self.samples + 1)) if valid > self.samples else 0
        return {"audio": torch.from_numpy(audio[start : start + min(valid, self.samples)].copy())}


def pad_crops(samples: list[dict], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of at most ``length`` samples -> ``(B, length)`` waveforms and valid-sample masks."""
    waveform = torch.zeros(len(samples), length)
    mask = torch.zeros(len(samples), length)
    for i, sample in enumerate(samples):
        n = sample["audio"].shape[0]
        waveform[i, :n] = sample["audio"]
        mask[i, :n] = 1.0
    return waveform, mask


def target_geometry(backbone: PreTrainedModel) -> tuple[int, int]:
    """``(stride, context)`` in log-mel frames: token ``t`` spans frames ``[t*stride, t*stride+context)``.

    Raises:
        ValueError: the backbone's token stride is not a whole number of 10 ms hops.
    """
    layers = feature_encoder_layers(backbone)
    token_stride = math.prod(stride for _, stride in layers)
    if token_stride % TARGET_HOP:
        raise ValueError(
            f"audio backbone conv_stride {[s for _, s in layers]} gives a token every "
            f"{token_stride} samples, not a multiple of the targets' {TARGET_HOP}-sample hop"
        )
    context = max(1, (min_input_length(layers) - TARGET_WINDOW) // TARGET_HOP + 1)
    return token_stride // TARGET_HOP, context


def token_descriptors(mel: torch.Tensor, tokens: int, stride: int, context: int) -> torch.Tensor:
    """``(B, F, M)`` log-mel frames -> ``(B, tokens, context * M)``: each token's frames side by side.

    Frames past the end (a token whose receptive field outlasts the last whole frame) repeat the
    last frame.
    """
    starts = torch.arange(tokens) * stride
    index = (starts[:, None] + torch.arange(context)[None]).clamp_max(mel.shape[1] - 1)
    return mel[:, index].flatten(2)  # (B, tokens, context, M) -> (B, tokens, context * M)


def kmeans(
    points: torch.Tensor, k: int, iterations: int, generator: torch.Generator
) -> torch.Tensor:
    """Lloyd's k-means of ``(N, D)`` points from ``k`` random points; returns ``(k, D)`` centroids.

    A cluster that loses all its points restarts at a random point.
    """
    if points.shape[0] < k:
        raise ValueError(
            f"k-means of {k} clusters needs at least {k} points, got {points.shape[0]}"
        )
    centroids = points[torch.randperm(points.shape[0], generator=generator)[:k]].clone()
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        counts = torch.bincount(assignment, minlength=k)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1).unsqueeze(1).to(points.dtype)
        restarts = torch.randint(points.shape[0], (int(empty.sum()),), generator=generator)
        centroids[empty] = points[restarts]
    return centroids


def span_mask(
    batch: int, tokens: int, start_prob: float, span: int, generator: torch.Generator
) -> torch.Tensor:
    """``(batch, tokens)`` bool: spans of ``span`` tokens starting with probability ``start_prob``."""
    starts = torch.rand(batch, tokens, generator=generator) < start_prob
    masked = torch.zeros(batch, tokens, dtype=torch.bool)
    for offset in range(min(span, tokens)):
        masked[:, offset:] |= starts[:, : tokens - offset]
    return masked


class MaskedPrediction(nn.Module):
    """A backbone, its mask embedding and a linear head over the codebook's clusters."""

    def __init__(self, backbone: PreTrainedModel, clusters: int) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        # HubertModel replaces masked tokens by its `masked_spec_embed`, which it only creates
        # when SpecAugment is configured (DenseAV turns that off).
        backbone.masked_spec_embed = nn.Parameter(torch.rand(hidden))
        self.head = nn.Linear(hidden, clusters)

    def forward(self, waveform: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` normalised waveform, ``(B, T)`` bool mask -> ``(B, T, clusters)`` logits."""
        hidden = self.backbone(input_values=waveform, mask_time_indices=masked).last_hidden_state
        return self.head(hidden)

    def save_backbone(self, out: Path) -> None:
        """``save_pretrained`` the backbone without the mask embedding (DenseAV has none)."""
        del self.backbone.masked_spec_embed
        self.backbone.save_pretrained(out)


class TokenTargets:
    """Loader batches -> backbone inputs, valid tokens and each token's log-mel descriptor."""

    def __init__(self, backbone: PreTrainedModel, crop_samples: int) -> None:
        self.layers = feature_encoder_layers(backbone)
        self.stride, self.context = target_geometry(backbone)
        self.mel = LogMelFilterbank(TARGET_WINDOW, TARGET_HOP, TARGET_MELS, SAMPLE_RATE)
        self.crop_samples = crop_samples

    def __call__(self, samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> ``(B, N)`` normalised waveform, ``(B, T)`` bool valid tokens, ``(B, T, D)`` descriptors."""
        waveform, sample_mask = pad_crops(samples, self.crop_samples)
        waveform = normalize_waveform(waveform, sample_mask)
        valid = downsample_mask(sample_mask, self.layers) > 0.99
        with torch.no_grad():
            frames = self.mel(waveform.unsqueeze(1)).transpose(1, 2)
        descriptors = token_descriptors(frames, valid.shape[1], self.stride, self.context)
        return waveform, valid, descriptors


def fit_codebook(
    batches: Iterator[list[dict]],
    targets: TokenTargets,
    cfg: PretrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means over the valid tokens of ``cfg.kmeans_batches`` batches -> ``(K, D)`` centroids and
    ``(K,)`` cluster sizes."""
    log.info("k-means: %d clusters over the tokens of %d batches", cfg.clusters, cfg.kmeans_batches)
    points = []
    for _ in tqdm(range(cfg.kmeans_batches), desc="k-means data", unit="batch"):
        _, valid, descriptors = targets(next(batches))
        points.append(descriptors[valid])
    tokens = torch.cat(points)
    codebook = kmeans(tokens, cfg.clusters, cfg.kmeans_iterations, generator)
    sizes = torch.bincount(torch.cdist(tokens, codebook).argmin(1), minlength=cfg.clusters)
    return codebook, sizes


def train_masked_prediction(
    model: MaskedPrediction,
    batches: Iterator[list[dict]],
    targets: TokenTargets,
    codebook: torch.Tensor,
    cfg: PretrainConfig,
    generator: torch.Generator,
) -> list[dict]:
    """``cfg.steps`` AdamW steps; returns the mean loss and accuracy of every 50 steps."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * max(0.0, 1.0 - s / cfg.steps),
    )
    curve: list[dict] = []
    window: list[tuple[float, float]] = []
    progress = tqdm(range(cfg.steps), desc="pretrain audio", unit="step")
    for step in progress:
        waveform, valid, descriptors = targets(next(batches))
        labels = torch.cdist(descriptors, codebook.unsqueeze(0)).argmin(-1)  # (B, T)
        masked = span_mask(*valid.shape, cfg.mask_start_prob, cfg.mask_span, generator)
        scored = masked & valid
        if scored.any():
            logits = model(waveform, masked)[scored]
            loss = F.cross_entropy(logits, labels[scored])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            accuracy = (logits.argmax(-1) == labels[scored]).float().mean().item()
            window.append((loss.item(), accuracy))
        schedule.step()
        if window and ((step + 1) % 50 == 0 or step + 1 == cfg.steps):
            loss_mean, acc_mean = np.mean(window, axis=0).tolist()
            curve.append(
                {"step": step + 1, "loss": round(loss_mean, 4), "accuracy": round(acc_mean, 4)}
            )
            progress.set_postfix(loss=f"{loss_mean:.3f}", acc=f"{acc_mean:.3f}")
            window.clear()
    return curve


def pretrain(cfg: PretrainConfig) -> dict:
    """Pretrain the audio backbone of ``cfg.config``'s model; returns the summary written to
    ``{out}/pretrain.json``."""
    train_cfg = load_config(cfg.config)
    sources = (
        [Source(url, 1.0, None) for url in cfg.data]
        if cfg.data
        else dataset_sources(train_cfg.data)
    )
    if not sources:
        raise ValueError("no audio to pretrain on: pass --data or a --config with data.datasets")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    backbone = build_audio_backbone(build_model_config(train_cfg.model))
    targets = TokenTargets(backbone, int(cfg.crop_seconds * SAMPLE_RATE))
    loader = build_train_loader(
        sources,
        cfg.batch_size,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
        sample_transform=AudioCrop(targets.crop_samples),
    )
    batches = iter(loader)
    started = time.time()
    codebook, sizes = fit_codebook(batches, targets, cfg, generator)
    model = MaskedPrediction(backbone, cfg.clusters)
    curve = train_masked_prediction(model, batches, targets, codebook, cfg, generator)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_backbone(out)
    summary = {
        "settings": asdict(cfg),
        "model": train_cfg.model,
        "target_frames": {
            "stride": targets.stride,
            "context": targets.context,
            "mels": TARGET_MELS,
        },
        "cluster_sizes": {"min": int(sizes.min()), "max": int(sizes.max())},
        "seconds": round(time.time() - started, 1),
        "curve": curve,
    }
    (out / "pretrain.json").write_text(json.dumps(summary, indent=1) + "\n")
    log.info("pretrained audio backbone in %s (set model.audio_backbone: %s)", out, out)
    return summary


def parse_args(argv: list[str] | None = None) -> PretrainConfig:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.pretrain_audio",
        description=__doc__.split("\n\n")[0],
        epilog="Train DenseAV from the result with --model.audio_backbone OUT.",
    )
    for spec in fields(PretrainConfig):
        flag = f"--{spec.name.replace('_', '-')}"
        text = spec.metadata["help"]
        if spec.name == "data":
            parser.add_argument(flag, action="append", default=[], help=text)
        elif spec.default is MISSING:
            parser.add_argument(flag, required=True, help=text)
        else:
            kind = type(spec.default)
            parser.add_argument(
                flag, type=kind, default=spec.default, help=f"{text} (default {spec.default})"
            )
    return PretrainConfig(**vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    pretrain(parse_args(argv))


if __name__ == "__main__":
    main()
