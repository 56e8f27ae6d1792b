"""The one configuration object of a DenseAV model: backbones, aligners, aggregation and loss weights.

``DenseAVConfig`` is a plain dataclass that round-trips through ``to_dict``/``from_dict`` (JSON and
YAML friendly). Three presets:

- ``DenseAVConfig.paper()``: the published model (DINO ViT-S/8 + HuBERT-large, 384-d, 1 head).
- ``DenseAVConfig.toy()``: small randomly initialised ResNet and HuBERT sized for the toy world
  (96 px images, 16 kHz audio at ~50 Hz backbone rate), two heads.
- ``DenseAVConfig.tiny()``: the smallest sensible model, for tests.

A backbone is given by ``*_backbone`` (a Hugging Face model id or a local directory whose weights
initialise it) and/or ``*_backbone_config`` (an architecture dict for the transformers config class,
including ``model_type``). With only the dict, the backbone is built with random weights; with both,
the dict is the configuration the weights are loaded into. ``DenseAV.save_pretrained`` stores the
resolved architecture dict so a saved model rebuilds without looking anything up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

AGGREGATIONS = ("multihead", "avgpool", "cls", "maxspace")
IMAGE_FINETUNING = ("lora", "full")
AUDIO_FRONT_ENDS = ("waveform", "log_mel")
SIMILARITY_IMPLS = ("fused", "naive")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _default_audio_overrides() -> dict[str, Any]:
    # No layer drop and no SpecAugment masking: both make parameters unused in some steps (which
    # distributed data parallel rejects) and neither is part of DenseAV's recipe.
    return {"layerdrop": 0.0, "mask_time_prob": 0.0, "mask_feature_prob": 0.0}


@dataclass
class DenseAVConfig:
    """Every setting of the model and its loss. Defaults are the paper's (section 3, 16)."""

    # Backbones.
    image_backbone: str | None = "facebook/dino-vits8"
    image_backbone_config: dict[str, Any] | None = None
    audio_backbone: str | None = "facebook/hubert-large-ls960-ft"
    audio_backbone_config: dict[str, Any] | None = None
    # Settings forced onto the audio backbone's transformers config (loaded or built).
    audio_backbone_overrides: dict[str, Any] = field(default_factory=_default_audio_overrides)
    attn_implementation: str = "sdpa"  # "eager" when attention weights are needed
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    # What of the image backbone trains in phase 2: "lora" (the paper: adapters on a pretrained
    # backbone) or "full" (every weight; for backbones trained from scratch).
    image_finetuning: str = "lora"
    # The audio backbone's first layer: "waveform" (its own learnable convolution) or "log_mel"
    # (a fixed log-mel filter bank of the same window and hop; see denseav/front_end.py).
    audio_front_end: str = "waveform"

    # LoRA on the image backbone's attention query/key/value projections.
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_dropout: float = 0.0

    # Aligners.
    feature_dim: int = 384
    heads: int = 1
    audio_conv_kernel: int = 3
    audio_conv_stride: int = 3
    audio_attention_heads: int = 6
    pool_image_in_training: bool = True  # 2x2 average pooling of image features in training only

    # Similarity aggregation (paper Table 4) and its implementation.
    aggregation: str = "multihead"
    similarity_impl: str = "fused"

    # Trainable inverse temperature gamma (published code: init 1, clamped to [0.01, 100]).
    inverse_temperature_init: float = 1.0
    inverse_temperature_min: float = 0.01
    inverse_temperature_max: float = 100.0

    # Loss weights (paper eq. 5 and 15) and the NonNeg sample count (paper eq. 11).
    dis_weight: float = 0.05
    splice_weight: float = 0.01
    silence_weight: float = 0.01
    cal_weight: float = 0.1
    nonneg_weight: float = 0.01
    tv_weight: float = 0.01
    nonneg_samples: int = 250
    # Whether spliced negative tokens count in InfoNCE's time average (the paper's eq. 2 averages
    # over every audio token and names no exception); False leaves them to the splice term alone.
    splice_in_infonce: bool = True

    def __post_init__(self) -> None:
        self.image_mean = tuple(self.image_mean)
        self.image_std = tuple(self.image_std)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first setting that cannot work."""
        if self.image_backbone is None and self.image_backbone_config is None:
            raise ValueError(
                "DenseAVConfig: set image_backbone (name or path) or image_backbone_config"
            )
        if self.audio_backbone is None and self.audio_backbone_config is None:
            raise ValueError(
                "DenseAVConfig: set audio_backbone (name or path) or audio_backbone_config"
            )
        for name in ("image_backbone_config", "audio_backbone_config"):
            arch = getattr(self, name)
            if arch is not None and "model_type" not in arch:
                raise ValueError(
                    f"DenseAVConfig.{name} needs a 'model_type' (e.g. 'vit', 'hubert')"
                )
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"DenseAVConfig.aggregation={self.aggregation!r}; choose from {AGGREGATIONS}"
            )
        if self.image_finetuning not in IMAGE_FINETUNING:
            raise ValueError(
                f"DenseAVConfig.image_finetuning={self.image_finetuning!r}; choose from {IMAGE_FINETUNING}"
            )
        if self.audio_front_end not in AUDIO_FRONT_ENDS:
            raise ValueError(
                f"DenseAVConfig.audio_front_end={self.audio_front_end!r}; choose from {AUDIO_FRONT_ENDS}"
            )
        if self.similarity_impl not in SIMILARITY_IMPLS:
            raise ValueError(
                f"DenseAVConfig.similarity_impl={self.similarity_impl!r}; choose from {SIMILARITY_IMPLS}"
            )
        if self.heads < 1 or self.feature_dim % self.heads:
            raise ValueError(
                f"DenseAVConfig: feature_dim={self.feature_dim} must split into heads={self.heads}"
            )
        if self.feature_dim % self.audio_attention_heads:
            raise ValueError(
                f"DenseAVConfig: feature_dim={self.feature_dim} must split into "
                f"audio_attention_heads={self.audio_attention_heads}"
            )
        if (
            not 0
            < self.inverse_temperature_min
            <= self.inverse_temperature_init
            <= self.inverse_temperature_max
        ):
            raise ValueError("DenseAVConfig: need 0 < inverse_temperature_min <= init <= max")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("DenseAVConfig: image_mean and image_std need 3 values (RGB)")
        if self.nonneg_samples < 1:
            raise ValueError("DenseAVConfig.nonneg_samples must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["image_mean"] = list(self.image_mean)
        out["image_std"] = list(self.image_std)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DenseAVConfig:
        """Inverse of ``to_dict``; unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"DenseAVConfig: unknown setting(s) {unknown}")
        return cls(**data)

    def replace(self, **changes: Any) -> DenseAVConfig:
        """A copy with some settings changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper(cls, **changes: Any) -> DenseAVConfig:
        """The published model: DINO ViT-S/8 + HuBERT-large-ls960-ft, 384-d features, one head."""
        return cls(**changes)

    @classmethod
    def toy(cls, **changes: Any) -> DenseAVConfig:
        """Randomly initialised small ResNet (96 px, stride 8) and HuBERT (16 kHz in, 50 Hz out), 2 heads.

        Sized so a batch of 16 ten-second clips trains on a CPU. Images: a ResNet of two stages
        of one basic block each (widths 64, 96) giving a 12 x 12 feature map, like a patch-8 ViT
        at 96 px, whose features each see 51 px of the image (with two blocks per stage they see
        all of it and localise spoken words less sharply: held-out speech mAP after 3000 steps
        0.71 against 0.77-0.80). Audio: a two-layer conv feature encoder (a fixed 25 ms log-mel
        filter bank at a 10 ms hop, then a learned stride-2 conv: 320 samples per frame, like
        HuBERT's), 3 transformer layers of width 64, no dropout.

        Both backbones start from random weights, which shapes three choices, each measured on the
        toy world (docs/demo-experiments.md): the whole image backbone trains in phase 2 (LoRA
        adapters on a random backbone left held-out segmentation at chance); the image backbone is
        convolutional (a fully trained random ViT spreads each clip's evidence over every token,
        and its held-out speech-prompted mAP after 1200 steps was 0.38 against 0.62-0.69 for a
        ResNet of two blocks per stage); and the audio starts from standardised log-mel frames,
        from which a random HuBERT learns words several times faster than from its own waveform
        layer.
        """
        settings: dict[str, Any] = {
            "image_backbone": None,
            "image_backbone_config": {
                "model_type": "resnet",
                "num_channels": 3,
                "embedding_size": 32,
                "hidden_sizes": [64, 96],
                "depths": [1, 1],
                "layer_type": "basic",
                "image_size": 96,
            },
            "audio_backbone": None,
            "audio_backbone_config": {
                "model_type": "hubert",
                "hidden_size": 64,
                "num_hidden_layers": 3,
                "num_attention_heads": 4,
                "intermediate_size": 128,
                # A 25 ms / 10 ms filter bank (fixed log-mel here, learnable with
                # audio_front_end="waveform"), then 2x: 50 Hz like HuBERT's own 7-layer encoder,
                # ~3x cheaper per step than a 4-layer stack at stride 5 first.
                "conv_dim": [64, 64],
                "conv_kernel": [400, 4],
                "conv_stride": [160, 2],
                "num_conv_pos_embeddings": 32,
                "num_conv_pos_embedding_groups": 8,
                "hidden_dropout": 0.0,
                "attention_dropout": 0.0,
                "activation_dropout": 0.0,
            },
            "image_finetuning": "full",
            "audio_front_end": "log_mel",
            "feature_dim": 64,
            "heads": 2,
            "audio_attention_heads": 4,
        }
        settings.update(changes)
        return cls(**settings)

    @classmethod
    def tiny(cls, **changes: Any) -> DenseAVConfig:
        """The smallest model that still exercises every part (32 px images, 2 heads); for tests."""
        settings: dict[str, Any] = {
            "image_backbone": None,
            "image_backbone_config": {
                "model_type": "vit",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "image_size": 32,
                "patch_size": 8,
                "qkv_bias": True,
            },
            "audio_backbone": None,
            "audio_backbone_config": {
                "model_type": "hubert",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "conv_dim": [16, 16, 16],
                "conv_kernel": [10, 8, 8],
                "conv_stride": [5, 8, 8],
                "num_conv_pos_embeddings": 16,
                "num_conv_pos_embedding_groups": 4,
                "hidden_dropout": 0.0,
                "attention_dropout": 0.0,
                "activation_dropout": 0.0,
            },
            "feature_dim": 32,
            "heads": 2,
            "audio_attention_heads": 2,
        }
        settings.update(changes)
        return cls(**settings)
