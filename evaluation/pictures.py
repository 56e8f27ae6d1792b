"""Pictures people look at: heatmap overlays, per-head colours, labelled grids (paper Figure 1).

All functions take and return numpy RGB ``uint8`` arrays ``(H, W, 3)``; activation maps are
float arrays already upsampled to the image size. Composition is done with PIL (fast, no
figure machinery), so a report with hundreds of panels renders in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

# Head k is drawn in HEAD_COLOURS[k % len]. With two heads the paper's sound/language split shows
# as orange vs. blue.
HEAD_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 128, 0),
    (0, 150, 255),
    (40, 200, 80),
    (230, 40, 200),
    (250, 230, 40),
    (150, 90, 255),
)
MASK_COLOUR = (0, 255, 80)
TEXT_COLOUR = (255, 255, 255)
BACKGROUND = (24, 24, 24)


def head_colour(k: int) -> tuple[int, int, int]:
    """The display colour of head ``k``."""
    return HEAD_COLOURS[k % len(HEAD_COLOURS)]


def scale_unit(maps: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Min-max scale to ``[0, 1]`` with a shared range (given, or the array's own)."""
    maps = np.asarray(maps, dtype=np.float32)
    lo = float(maps.min()) if lo is None else lo
    hi = float(maps.max()) if hi is None else hi
    return np.clip((maps - lo) / max(hi - lo, 1e-8), 0.0, 1.0)


def overlay_heads(
    image: np.ndarray, maps: np.ndarray, max_alpha: float = 0.8, dim: float = 0.55
) -> np.ndarray:
    """Colour each head's activation over a dimmed image, head k in :func:`head_colour`.

    Args:
        image: ``(H, W, 3)`` uint8. maps: ``(K, H, W)`` in ``[0, 1]`` (1 = most active).
    """
    out = image.astype(np.float32) * dim
    for k, m in enumerate(np.asarray(maps, dtype=np.float32)):
        alpha = (max_alpha * m**2)[..., None]  # squaring fades weak activations
        out = out * (1 - alpha) + np.asarray(head_colour(k), np.float32) * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55, cmap: str = "inferno"
) -> np.ndarray:
    """Blend one ``(H, W)`` map in ``[0, 1]`` over the image with a colour map."""
    colours = colormaps[cmap](np.asarray(heatmap, dtype=np.float32))[..., :3] * 255
    out = image.astype(np.float32) * (1 - alpha) + colours * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def outline_mask(
    image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = MASK_COLOUR
) -> np.ndarray:
    """Draw the boundary pixels of a bool ``(H, W)`` mask onto a copy of the image."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    out = image.copy()
    out[m & ~inner] = colour
    return out


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def caption(image: np.ndarray, text: str, size: int = 12) -> np.ndarray:
    """Put a text bar above the image."""
    font = _font(size)
    bar = size + 6
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + bar), BACKGROUND)
    canvas.paste(Image.fromarray(image), (0, bar))
    ImageDraw.Draw(canvas).text((3, 2), text, fill=TEXT_COLOUR, font=font)
    return np.asarray(canvas)


def grid(rows: Sequence[Sequence[np.ndarray]], pad: int = 4) -> np.ndarray:
    """Tile panels row by row on a dark background; panels may differ in size."""
    if not rows or not any(rows):
        raise ValueError("grid needs at least one panel")
    heights = [max(p.shape[0] for p in row) for row in rows]
    width = max(sum(p.shape[1] for p in row) + pad * (len(row) + 1) for row in rows)
    canvas = Image.new("RGB", (width, sum(heights) + pad * (len(rows) + 1)), BACKGROUND)
    y = pad
    for row, h in zip(rows, heights):
        x = pad
        for panel in row:
            canvas.paste(Image.fromarray(panel), (x, y))
            x += panel.shape[1] + pad
        y += h + pad
    return np.asarray(canvas)


def head_legend(names: Sequence[str], size: int = 12) -> np.ndarray:
    """A one-line legend: a colour swatch and the name of every head."""
    font = _font(size)
    widths = [int(font.getlength(n)) + size + 14 for n in names]
    canvas = Image.new("RGB", (sum(widths) + 6, size + 8), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = 4
    for k, (name, w) in enumerate(zip(names, widths)):
        draw.rectangle((x, 4, x + size - 1, 4 + size - 1), fill=head_colour(k))
        draw.text((x + size + 4, 2), name, fill=TEXT_COLOUR, font=font)
        x += w
    return np.asarray(canvas)


def activation_strip(
    strength: np.ndarray, width: int, height: int = 60, cursor: float | None = None
) -> np.ndarray:
    """Per-head activation over time as coloured lines, like the bars under paper Figure 1.

    Args:
        strength: ``(K, T)`` in ``[0, 1]``. cursor: an optional time position in ``[0, 1]`` drawn as
            a vertical line (the current video frame).
    """
    strength = np.asarray(strength, dtype=np.float32)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    t = strength.shape[1]
    xs = np.linspace(0, width - 1, t) if t > 1 else np.array([width / 2])
    for k, series in enumerate(strength):
        ys = (height - 3) - series * (height - 6)
        points = list(zip(xs.tolist(), ys.tolist()))
        if len(points) > 1:
            draw.line(points, fill=head_colour(k), width=2)
        else:
            draw.ellipse((xs[0] - 2, ys[0] - 2, xs[0] + 2, ys[0] + 2), fill=head_colour(k))
    if cursor is not None:
        x = cursor * (width - 1)
        draw.line([(x, 0), (x, height)], fill=TEXT_COLOUR, width=1)
    return np.asarray(canvas)


def save_png(path, image: np.ndarray) -> None:
    """Write an RGB array as PNG."""
    Image.fromarray(image).save(path, format="PNG")
