"""Image and audio backbones through transformers, pretrained or built from a small config.

The image backbone is a ViT-family model (DINO ViT-S/8 by default: ``ViTModel`` without pooler;
patch tokens after a CLS token) or a convolutional ``ResNetModel`` (a feature map; its local
receptive field suits backbones trained from scratch on little data). The audio backbone is a
HuBERT/wav2vec2-style model (``HubertModel`` by default). Small configs build the very same
classes with random weights; nothing here is a stand-in.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

# Attention projection names: transformers 5 (q_proj, ...) and older releases (query, ...).
_QKV_NAME_SETS = (("q_proj", "k_proj", "v_proj"), ("query", "key", "value"))
# Image backbones whose last_hidden_state is a (B, C, h, w) feature map.
CONV_IMAGE_BACKBONES = ("resnet",)


class BackboneNotFoundError(OSError):
    """Pretrained backbone weights were requested but could not be found (offline or bad path)."""


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or os.path.exists(source)


def _not_found(role: str, source: str, setting: str, cause: Exception) -> BackboneNotFoundError:
    if _looks_like_path(source):
        where = f"the local path {source!r} does not hold a transformers checkpoint"
    else:
        where = (
            f"the model id {source!r} is not in the Hugging Face cache and could not be downloaded"
            f" (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')})"
        )
    return BackboneNotFoundError(
        f"Could not load the {role} backbone weights: {where}. To use a local copy, download it on a "
        f"connected machine (e.g. `huggingface-cli download {source} --local-dir DIR`) and set "
        f"`{setting}: DIR` in the DenseAV config; or build small random-init backbones with "
        f"`DenseAVConfig.toy()` / `DenseAVConfig.tiny()`. Cause: {cause}"
    )


def build_backbone(
    role: str,
    source: str | None,
    architecture: dict[str, Any] | None,
    overrides: dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    load_weights: bool = True,
) -> PreTrainedModel:
    """Build a transformers backbone.

    Args:
        role: ``"image"`` or ``"audio"`` (names the config settings in error messages).
        source: model id or local directory whose weights initialise the backbone, or None.
        architecture: transformers config dict with ``model_type``; required when ``source`` is None
            or ``load_weights`` is False.
        overrides: settings forced onto the transformers config (e.g. ``layerdrop=0``).
        load_weights: False builds the architecture with random weights (used when a full DenseAV
            checkpoint will overwrite them).
    Raises:
        BackboneNotFoundError: weights requested but not found; the message names ``source``.
    """
    setting = f"{role}_backbone"
    init_kwargs: dict[str, Any] = {"attn_implementation": attn_implementation}
    config: PretrainedConfig
    if architecture is not None:
        arch = dict(architecture)
        config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    elif source is not None:
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as error:
            raise _not_found(role, source, setting, error) from error
    else:
        raise ValueError(f"DenseAVConfig: set {setting} or {setting}_config")
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    if config.model_type == "vit":
        init_kwargs["add_pooling_layer"] = False
    if config.model_type in CONV_IMAGE_BACKBONES:
        del init_kwargs["attn_implementation"]  # no attention to implement

    if source is None or not load_weights:
        return AutoModel.from_config(config, **init_kwargs)
    try:
        return AutoModel.from_pretrained(source, config=config, **init_kwargs)
    except OSError as error:
        raise _not_found(role, source, setting, error) from error


def architecture_dict(model: PreTrainedModel) -> dict[str, Any]:
    """The backbone's transformers config as a dict that ``build_backbone`` rebuilds it from.

    Every model-specific value is written out (so newer library defaults cannot change a saved
    model); generic ``PretrainedConfig`` settings (output flags, labels, versions) are left out.
    """
    generic = set(PretrainedConfig().to_dict())
    data = {k: v for k, v in model.config.to_dict().items() if k not in generic}
    data["model_type"] = model.config.model_type
    return data


def qkv_module_names(model: torch.nn.Module) -> list[str]:
    """Leaf names of the attention query/key/value projections, whichever naming the model uses."""
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for names in _QKV_NAME_SETS:
        if set(names) <= leaves:
            return list(names)
    raise ValueError(
        f"{type(model).__name__}: no attention projections named {_QKV_NAME_SETS} to put LoRA on"
    )


def add_lora(model: PreTrainedModel, rank: int, alpha: float, dropout: float) -> PreTrainedModel:
    """Inject LoRA adapters (peft) into the query/key/value projections, in place.

    The adapter parameters have ``lora_`` in their names; the base weights are left untouched.
    """
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=qkv_module_names(model)
    )
    return inject_adapter_in_model(config, model)


def is_conv_image_backbone(model: PreTrainedModel) -> bool:
    """True for backbones whose ``last_hidden_state`` is a ``(B, C, h, w)`` feature map."""
    return model.config.model_type in CONV_IMAGE_BACKBONES


def image_feature_dim(model: PreTrainedModel) -> int:
    """Channels of the image backbone's output features."""
    config = model.config
    return int(config.hidden_sizes[-1] if is_conv_image_backbone(model) else config.hidden_size)


def image_output_stride(model: PreTrainedModel) -> int:
    """Input pixels per output feature along each side (the ViT patch size, the ResNet stride)."""
    config = model.config
    if not is_conv_image_backbone(model):
        return int(config.patch_size)
    # ResNet: a stride-2 stem convolution and a stride-2 max pool, then every stage but the first
    # halves the resolution (the first too with downsample_in_first_stage).
    halvings = len(config.depths) - 1 + int(config.downsample_in_first_stage)
    return 4 * 2**halvings


def feature_encoder_layers(model: PreTrainedModel) -> list[tuple[int, int]]:
    """``(kernel, stride)`` of each convolution of a HuBERT/wav2vec2 feature encoder (no padding)."""
    config = model.config
    return list(zip(config.conv_kernel, config.conv_stride))
