"""The DenseAV model: backbones + aligners -> dense audio and image features in one space.

Shapes: images ``(B, 3, H, W)`` in ``[0, 1]``; waveforms ``(B, N)`` at 16 kHz; image features
``(B, C, h, w)`` (``h = H / patch``, halved by 2x2 average pooling in training mode); audio
features ``(B, C, T)`` at the aligner's token rate (~5.5 Hz for a 50 Hz backbone).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.export import register_dataclass
from transformers import PreTrainedModel

from denseav.aggregation import configured_similarity
from denseav.aligners import AudioAligner, ImageAligner
from denseav.audio import (
    SAMPLE_RATE,
    conv_output_length,
    downsample_mask,
    min_input_length,
    normalize_waveform,
)
from denseav.backbones import (
    add_lora,
    architecture_dict,
    build_backbone,
    feature_encoder_layers,
    image_feature_dim,
    image_output_stride,
    is_conv_image_backbone,
)
from denseav.config import DenseAVConfig
from denseav.front_end import install_log_mel_front_end

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class ImageFeatures:
    """Dense image features ``features (B, C, h, w)`` and the global token ``cls (B, C)``."""

    features: torch.Tensor
    cls: torch.Tensor


@dataclass
class AudioFeatures:
    """Dense audio features ``features (B, C, T)``, token mask ``mask (B, T)`` in ``[0, 1]`` (valid
    audio), and the global token ``cls (B, C)``."""

    features: torch.Tensor
    mask: torch.Tensor
    cls: torch.Tensor


@dataclass
class DenseAVOutput:
    """What ``DenseAV.forward`` returns: both modalities and the clamped inverse temperature (0-d)."""

    audio: AudioFeatures
    image: ImageFeatures
    inverse_temperature: torch.Tensor


# Registered as pytree nodes so wrappers that walk outputs (DistributedDataParallel with
# find_unused_parameters, torch.compile/export) see the tensors inside.
for _output_class in (ImageFeatures, AudioFeatures, DenseAVOutput):
    register_dataclass(_output_class, serialized_type_name=f"denseav.{_output_class.__name__}")


def build_audio_backbone(config: DenseAVConfig, load_weights: bool = True) -> PreTrainedModel:
    """The audio backbone of a DenseAV model of ``config``, front end included (also what
    ``trainer.pretrain_audio`` pretrains)."""
    backbone = build_backbone(
        "audio",
        config.audio_backbone,
        config.audio_backbone_config,
        overrides=config.audio_backbone_overrides,
        attn_implementation=config.attn_implementation,
        load_weights=load_weights,
    )
    if config.audio_front_end == "log_mel":
        install_log_mel_front_end(backbone, SAMPLE_RATE)
    return backbone


class DenseAV(nn.Module):
    """DenseAV (Hamilton et al. 2024): DINO + HuBERT backbones, aligners, a trainable temperature.

    Args:
        config: the model settings (see ``DenseAVConfig``).
        load_backbone_weights: False builds the backbones from their architecture dicts with random
            weights (``from_pretrained`` then loads a full checkpoint over them).
    """

    def __init__(self, config: DenseAVConfig, load_backbone_weights: bool = True) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.image_backbone = build_backbone(
            "image",
            config.image_backbone,
            config.image_backbone_config,
            attn_implementation=config.attn_implementation,
            load_weights=load_backbone_weights,
        )
        self.audio_backbone = build_audio_backbone(config, load_backbone_weights)
        if config.image_finetuning == "lora":
            add_lora(self.image_backbone, config.lora_rank, config.lora_alpha, config.lora_dropout)
        self.image_aligner = ImageAligner(
            image_feature_dim(self.image_backbone), config.feature_dim
        )
        self.audio_aligner = AudioAligner(
            self.audio_backbone.config.hidden_size,
            config.feature_dim,
            config.audio_conv_kernel,
            config.audio_conv_stride,
            config.audio_attention_heads,
        )
        self.inverse_temperature = nn.Parameter(
            torch.tensor(float(config.inverse_temperature_init))
        )
        self.register_buffer(
            "image_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "image_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False
        )
        self.set_phase(1)
        self.train()

    # ----------------------------------------------------------------------------------- image
    @property
    def patch_size(self) -> int:
        """Input pixels per image feature along each side (ViT patch size or ResNet stride)."""
        return image_output_stride(self.image_backbone)

    @property
    def image_size(self) -> int:
        """The square input size the image backbone was built for (its config's ``image_size``)."""
        size = getattr(self.image_backbone.config, "image_size", None)
        if size is None:
            raise ValueError(
                "the image backbone config has no image_size: add one to image_backbone_config"
            )
        return int(size)

    def encode_image(self, images: torch.Tensor) -> ImageFeatures:
        """``(B, 3, H, W)`` in ``[0, 1]`` -> ``ImageFeatures`` (``features (B, C, H/p, W/p)``, halved
        by 2x2 average pooling in training mode when ``config.pool_image_in_training``)."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"images must be float (B, 3, H, W) in [0, 1], got {images.dtype} {tuple(images.shape)}"
            )
        b, _, height, width = images.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
        pixels = (images - self.image_mean) / self.image_std
        if is_conv_image_backbone(self.image_backbone):
            patches = self.image_backbone(pixel_values=pixels).last_hidden_state
            global_token = patches.mean(dim=(2, 3))
        else:
            resize = (height, width) != (self.image_size, self.image_size)
            hidden = self.image_backbone(
                pixel_values=pixels, interpolate_pos_encoding=resize
            ).last_hidden_state
            h, w = height // p, width // p
            patches = hidden[:, -h * w :].reshape(b, h, w, -1).permute(0, 3, 1, 2)
            global_token = hidden[:, 0]
        features = self.image_aligner(patches)
        if self.training and self.config.pool_image_in_training:
            features = F.avg_pool2d(features, kernel_size=2)
        return ImageFeatures(features=features, cls=self.image_aligner.align_global(global_token))

    # ----------------------------------------------------------------------------------- audio
    @property
    def token_layers(self) -> list[tuple[int, int]]:
        """``(kernel, stride)`` of every convolution from waveform samples to aligner tokens."""
        return feature_encoder_layers(self.audio_backbone) + self.audio_aligner.layers

    def num_tokens(self, num_samples: int) -> int:
        """Audio tokens ``T`` produced for a waveform of ``num_samples`` samples."""
        return conv_output_length(num_samples, self.token_layers)

    def token_mask(self, sample_mask: torch.Tensor) -> torch.Tensor:
        """Any ``(B, N)`` soft sample-level mask -> ``(B, T)`` at the aligner's token rate."""
        return downsample_mask(sample_mask, self.token_layers)

    def encode_audio(
        self, waveform: torch.Tensor, sample_mask: torch.Tensor | None = None
    ) -> AudioFeatures:
        """``(B, N)`` 16 kHz waveform (+ ``(B, N)`` valid-sample mask) -> ``AudioFeatures``.

        Each clip is normalised over its valid samples; padding is silence (zeros) to the backbone.
        """
        if waveform.dim() != 2:
            raise ValueError(
                f"waveform must be (B, N) mono samples, got shape {tuple(waveform.shape)}"
            )
        shortest = min_input_length(self.token_layers)
        if waveform.shape[1] < shortest:
            raise ValueError(
                f"audio of {waveform.shape[1]} samples is too short: the model needs at least {shortest}"
            )
        if sample_mask is None:
            sample_mask = torch.ones_like(waveform)
        elif sample_mask.shape != waveform.shape:
            raise ValueError(
                f"sample_mask {tuple(sample_mask.shape)} != waveform {tuple(waveform.shape)}"
            )
        normed = normalize_waveform(waveform, sample_mask)
        frames = self.audio_backbone(input_values=normed).last_hidden_state
        mask = self.token_mask(sample_mask.to(waveform.dtype))
        features, cls = self.audio_aligner(frames, mask)
        return AudioFeatures(features=features, mask=mask, cls=cls)

    # ------------------------------------------------------------------------------ similarity
    def clamped_inverse_temperature(self) -> torch.Tensor:
        """gamma clamped to ``[inverse_temperature_min, inverse_temperature_max]`` (0-d)."""
        c = self.config
        return self.inverse_temperature.clamp(c.inverse_temperature_min, c.inverse_temperature_max)

    def similarity(
        self,
        audio: torch.Tensor,
        image: torch.Tensor,
        audio_mask: torch.Tensor | None = None,
        *,
        audio_cls: torch.Tensor | None = None,
        image_cls: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(Ba, C, T), (Bv, C, H, W), (Ba, T) -> (Ba, Bv)`` by ``config.aggregation``.

        The ``"cls"`` aggregation also needs ``audio_cls (Ba, C)`` and ``image_cls (Bv, C)``.
        """
        return configured_similarity(
            self.config, audio, image, audio_mask, audio_cls=audio_cls, image_cls=image_cls
        )

    def forward(
        self, images: torch.Tensor, waveform: torch.Tensor, sample_mask: torch.Tensor | None = None
    ) -> DenseAVOutput:
        """Encode both modalities: ``(B, 3, H, W)``, ``(B, N)``, ``(B, N)`` -> ``DenseAVOutput``."""
        return DenseAVOutput(
            audio=self.encode_audio(waveform, sample_mask),
            image=self.encode_image(images),
            inverse_temperature=self.clamped_inverse_temperature(),
        )

    # ---------------------------------------------------------------------------------- phases
    def set_phase(self, phase: int) -> None:
        """Choose what trains (``requires_grad``).

        Phase 1: the aligners and the inverse temperature; both backbones frozen.
        Phase 2: additionally all of the audio backbone and, of the image backbone, the LoRA
        adapters (``image_finetuning="lora"``: its base weights stay frozen) or every weight
        (``"full"``).
        """
        if phase not in (1, 2):
            raise ValueError(f"phase must be 1 or 2, got {phase!r}")
        for param in self.parameters():
            param.requires_grad_(False)
        trained: list[nn.Parameter] = [self.inverse_temperature]
        trained += [*self.image_aligner.parameters(), *self.audio_aligner.parameters()]
        if phase == 2:
            trained += self.finetuned_image_parameters()
            trained += list(self.audio_backbone.parameters())
        for param in trained:
            param.requires_grad_(True)
        # transformers' wav2vec2-style feature encoders mark their input waveform as requiring
        # grad in training mode (for gradient checkpointing, which DenseAV does not use) unless
        # told otherwise: a frozen HuBERT would still record its whole graph and run backward
        # through it in phase 1, and a training one would compute an unused waveform gradient.
        encoder = getattr(self.audio_backbone, "feature_extractor", None)
        if encoder is not None and hasattr(encoder, "_requires_grad"):
            encoder._requires_grad = False
        self.phase = phase

    def finetuned_image_parameters(self) -> list[nn.Parameter]:
        """The image backbone parameters that train in phase 2 (LoRA adapters, or all of them)."""
        full = self.config.image_finetuning == "full"
        return [p for n, p in self.image_backbone.named_parameters() if full or "lora_" in n]

    # ------------------------------------------------------------------------------- save/load
    def resolved_config(self) -> DenseAVConfig:
        """The config with both backbone architectures written out (rebuilds without look-ups)."""
        return self.config.replace(
            image_backbone_config=architecture_dict(self.image_backbone),
            audio_backbone_config=architecture_dict(self.audio_backbone),
        )

    def config_json(self) -> str:
        """The text of ``config.json``: the resolved config, as ``from_pretrained`` reads it."""
        return json.dumps(self.resolved_config().to_dict(), indent=2) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

        Each file is written under a temporary name and renamed, weights first, config last.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        tmp = out / f".{WEIGHTS_NAME}.tmp"
        save_file(state, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out / WEIGHTS_NAME)
        tmp = out / f".{CONFIG_NAME}.tmp"
        tmp.write_text(self.config_json())
        os.replace(tmp, out / CONFIG_NAME)
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> DenseAV:
        """Load a model written by ``save_pretrained``; returned in eval mode."""
        src = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (src / name).is_file():
                raise FileNotFoundError(
                    f"{src}: no {name}; not a DenseAV checkpoint written by save_pretrained"
                )
        config = DenseAVConfig.from_dict(json.loads((src / CONFIG_NAME).read_text()))
        model = cls(config, load_backbone_weights=False)
        model.load_state_dict(load_file(str(src / WEIGHTS_NAME), device=str(map_location)))
        return model.to(map_location).eval()
