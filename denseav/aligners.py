"""Aligners: the small trainable heads between the backbones and the shared feature space.

Image: channel LayerNorm + 1x1 convolution (paper section 3.3).
Audio: channel LayerNorm + two unpadded time convolutions (kernel 3, stride 3 by default: 50 Hz ->
~5.5 Hz) + one pre-norm self-attention block over the tokens and a learned CLS token.
Both also map a global token to the feature space (for the "cls" aggregation of Table 4).
"""

from __future__ import annotations

import torch
from torch import nn


class ImageAligner(nn.Module):
    """``(B, C_in, h, w)`` backbone patch features -> ``(B, C, h, w)``; also maps the CLS token."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w) -> (B, C, h, w)``."""
        normed = self.norm(patches.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.proj(normed)

    def align_global(self, token: torch.Tensor) -> torch.Tensor:
        """``(B, C_in) -> (B, C)``: the same LayerNorm and 1x1 convolution on a single token."""
        return self.forward(token[:, :, None, None])[:, :, 0, 0]


class AudioAligner(nn.Module):
    """``(B, T_in, C_in)`` backbone frames -> features ``(B, C, T)`` and a global token ``(B, C)``."""

    def __init__(
        self, in_dim: int, out_dim: int, kernel: int, stride: int, attention_heads: int
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.conv1 = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, stride=stride)
        self.conv2 = nn.Conv1d(out_dim, out_dim, kernel_size=kernel, stride=stride)
        self.act = nn.GELU()
        self.cls_token = nn.Parameter(torch.randn(out_dim) * 0.02)
        self.attn_norm = nn.LayerNorm(out_dim)
        self.attn = nn.MultiheadAttention(out_dim, attention_heads, batch_first=True)
        self.mlp_norm = nn.LayerNorm(out_dim)
        self.mlp = nn.Sequential(
            nn.Linear(out_dim, 2 * out_dim), nn.GELU(), nn.Linear(2 * out_dim, out_dim)
        )

    @property
    def layers(self) -> list[tuple[int, int]]:
        """``(kernel, stride)`` of the time convolutions, in order."""
        return [(conv.kernel_size[0], conv.stride[0]) for conv in (self.conv1, self.conv2)]

    def forward(
        self, frames: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Align backbone frames.

        Args:
            frames: ``(B, T_in, C_in)``.
            token_mask: ``(B, T)`` at the output rate; tokens with mask 0 are not attended to.
        Returns:
            features ``(B, C, T)`` and global token ``(B, C)``.
        """
        x = self.norm(frames).transpose(1, 2)
        x = self.conv2(self.act(self.conv1(x))).transpose(1, 2)  # (B, T, C)
        b = x.shape[0]
        x = torch.cat([self.cls_token.expand(b, 1, -1), x], dim=1)
        ignore = None
        if token_mask is not None:
            ignore = torch.cat([token_mask.new_ones(b, 1), token_mask], dim=1) <= 0
        h = self.attn_norm(x)
        x = x + self.attn(h, h, h, key_padding_mask=ignore, need_weights=False)[0]
        x = x + self.mlp(self.mlp_norm(x))
        return x[:, 1:].transpose(1, 2), x[:, 0]
