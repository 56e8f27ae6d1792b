"""Drawing toy-world scenes: backgrounds, objects, and their exact per-pixel class masks.

Objects are unions of filled polygons in a unit square ([-1, 1]^2, y down) that are scaled,
rotated, mirrored and placed. Each object is rasterised once into a small patch (coverage in
[0, 1] and colour) by sampling 4x4 points per pixel with an exact even-odd scanline test (no
outward bias at edges, unlike filled-outline rasterisers), so a moving object in a video costs
one paste per frame. A pixel belongs to an object's class in the mask when that object's
coverage there is at least 0.5 and no later-drawn object covers it (later objects are in front).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.toyworld.classes import ToyClass

SUPERSAMPLE = 4
Color = tuple[float, float, float]


# ----------------------------------------------------------------------------- unit shapes
def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _circle(cx: float, cy: float, r: float) -> np.ndarray:
    return _ellipse(cx, cy, r, r)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    corners = [
        (x1 - r, y0 + r, -0.5),
        (x1 - r, y1 - r, 0.0),
        (x0 + r, y1 - r, 0.5),
        (x0 + r, y0 + r, 1.0),
    ]
    pts = []
    for cx, cy, start in corners:
        t = np.linspace(start * np.pi, (start + 0.5) * np.pi, 8)
        pts.append(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1))
    return np.concatenate(pts)


def _star(outer: float, inner: float, points: int = 5) -> np.ndarray:
    t = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y + 2.5], axis=1) / 17.0


def _bar(angle: float, length: float, width: float) -> np.ndarray:
    """A thick line from the origin in direction ``angle`` (a clock hand)."""
    d = np.array([np.cos(angle), np.sin(angle)])
    n = np.array([-d[1], d[0]]) * width / 2
    tail = -d * width / 2
    return np.array([tail + n, d * length + n, d * length - n, tail - n])


def _arc(cx: float, cy: float, r: float, t0: float, t1: float, n: int = 24) -> np.ndarray:
    """Points on a circular arc from angle ``t0`` to ``t1`` (degrees; y down, so clockwise)."""
    t = np.radians(np.linspace(t0, t1, n))
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


@dataclass(frozen=True)
class Part:
    """One filled polygon of an object. ``color`` None means the instance's body colour;
    ``shade`` multiplies it; ``clip`` is the index of an earlier part this one is clipped to."""

    polygon: np.ndarray
    color: Color | None = None
    shade: float = 1.0
    clip: int | None = None


def class_parts(name: str, rng: np.random.Generator) -> list[Part]:
    """The parts of one instance of class ``name`` in unit coordinates (random details, such as
    a clock's hand angles, come from ``rng``)."""
    if name == "ball":
        return [Part(_circle(0, 0, 1)), Part(_circle(-0.36, -0.38, 0.22), (255, 225, 225))]
    if name == "star":
        return [Part(_star(1.0, 0.46))]
    if name == "box":
        planks = [
            Part(_rect(-0.85, y - 0.05, 0.85, y + 0.05), shade=0.55) for y in (-0.42, 0, 0.42)
        ]
        return [Part(_rect(-0.85, -0.85, 0.85, 0.85))] + planks
    if name == "heart":
        return [Part(_heart())]
    if name == "fish":
        return [
            Part(_ellipse(-0.15, 0, 0.72, 0.44)),
            Part(np.array([[0.42, 0.0], [1.0, -0.48], [1.0, 0.48]]), shade=0.8),
            Part(_circle(-0.55, -0.1, 0.09), (15, 15, 15)),
        ]
    if name == "tree":
        return [
            Part(np.array([[0.0, -1.0], [0.82, 0.42], [-0.82, 0.42]])),
            Part(_rect(-0.17, 0.38, 0.17, 1.0), (105, 65, 30)),
        ]
    if name == "car":
        cabin = np.array([[-0.55, -0.13], [-0.35, -0.62], [0.35, -0.62], [0.55, -0.13]])
        window = np.array([[-0.42, -0.2], [-0.28, -0.52], [0.28, -0.52], [0.42, -0.2]])
        return [
            Part(_rect(-1.0, -0.15, 1.0, 0.45)),
            Part(cabin),
            Part(window, (185, 220, 250)),
            Part(_circle(-0.55, 0.45, 0.27), (20, 20, 20)),
            Part(_circle(0.55, 0.45, 0.27), (20, 20, 20)),
        ]
    if name == "bee":
        stripes = [
            Part(_rect(x - 0.12, -1, x + 0.12, 1), (20, 20, 20), clip=0)
            for x in (-0.32, 0.14, 0.58)
        ]
        return (
            [Part(_ellipse(0, 0.12, 0.9, 0.58))]
            + stripes
            + [
                Part(_ellipse(-0.15, -0.62, 0.28, 0.24), (215, 230, 245)),
                Part(_ellipse(0.22, -0.66, 0.28, 0.24), (215, 230, 245)),
            ]
        )
    if name == "cloud":
        return [
            Part(_circle(-0.5, 0.12, 0.42)),
            Part(_circle(0.0, -0.2, 0.56)),
            Part(_circle(0.52, 0.12, 0.42)),
            Part(_rect(-0.5, 0.12, 0.52, 0.54)),
        ]
    if name == "clock":
        hour, minute = rng.uniform(0, 2 * np.pi, size=2)
        return [
            Part(_circle(0, 0, 1), (25, 25, 25)),
            Part(_circle(0, 0, 0.8)),
            Part(_bar(hour, 0.45, 0.13), (25, 25, 25)),
            Part(_bar(minute, 0.68, 0.09), (25, 25, 25)),
        ]
    if name == "kite":
        diamond = np.array([[0.0, -1.0], [0.66, -0.25], [0.0, 1.0], [-0.66, -0.25]])
        return [
            Part(diamond),
            Part(_rect(-0.05, -1, 0.05, 1), (205, 160, 240), clip=0),
            Part(_rect(-0.7, -0.31, 0.7, -0.19), (205, 160, 240), clip=0),
        ]
    if name == "phone":
        return [
            Part(_rounded_rect(-0.56, -1.0, 0.56, 1.0, 0.2)),
            Part(_rect(-0.43, -0.8, 0.43, 0.62), (40, 170, 170)),
            Part(_circle(0, 0.8, 0.1), (125, 125, 125)),
        ]
    if name == "moon":  # the unit circle's left part outside a circle through (0.5, +-0.866)
        return [Part(np.concatenate([_arc(0, 0, 1, 60, 300), _arc(0.6, 0, 0.872, 263.4, 96.6)]))]
    if name == "drum":
        return [
            Part(_rect(-0.8, -0.45, 0.8, 0.85)),
            Part(_rect(-0.8, 0.62, 0.8, 0.85), shade=0.55),
            Part(_ellipse(0, -0.45, 0.8, 0.28), (225, 215, 190)),
            Part(_bar(np.radians(-150), 0.75, 0.08) + [0.2, -0.55], (150, 100, 50)),
        ]
    if name == "boat":
        return [
            Part(np.array([[-1.0, 0.35], [1.0, 0.35], [0.7, 0.85], [-0.7, 0.85]])),
            Part(_rect(-0.05, -1.0, 0.05, 0.35), (70, 50, 35)),
            Part(np.array([[0.1, -0.95], [0.1, 0.25], [0.8, 0.25]]), (240, 215, 140)),
        ]
    if name == "house":
        return [
            Part(_rect(-0.75, -0.15, 0.75, 0.95)),
            Part(np.array([[0.0, -1.0], [0.95, -0.1], [-0.95, -0.1]]), (150, 45, 35)),
            Part(_rect(-0.5, 0.35, -0.15, 0.95), (95, 60, 30)),
            Part(_rect(0.15, 0.1, 0.5, 0.45), (185, 220, 250)),
        ]
    if name == "cup":
        handle = np.concatenate([_arc(0.45, 0.0, 0.5, -80, 80), _arc(0.45, 0.0, 0.3, 80, -80)])
        return [
            Part(handle),
            Part(np.array([[-0.75, -0.7], [0.55, -0.7], [0.4, 0.8], [-0.6, 0.8]])),
            Part(_rect(-0.75, -0.7, 0.55, -0.55), shade=0.75),
        ]
    if name == "frog":
        return [
            Part(_ellipse(0, 0.2, 0.95, 0.62)),
            Part(_circle(-0.45, -0.42, 0.27)),
            Part(_circle(0.45, -0.42, 0.27)),
            Part(_circle(-0.45, -0.45, 0.11), (15, 15, 15)),
            Part(_circle(0.45, -0.45, 0.11), (15, 15, 15)),
            Part(_rect(-0.45, 0.28, 0.45, 0.36), (40, 80, 20)),
        ]
    if name == "horn":
        return [
            Part(np.array([[0.3, -0.16], [1.0, -0.8], [1.0, 0.8], [0.3, 0.16]])),
            Part(_rect(-1.0, -0.16, 0.35, 0.16)),
            Part(_rect(-1.0, -0.3, -0.84, 0.3), shade=0.7),
            Part(_rect(-0.45, -0.5, -0.05, -0.16), shade=0.8),
        ]
    if name == "train":
        return [
            Part(_rect(-1.0, -0.25, 0.4, 0.5)),
            Part(_rect(0.2, -0.8, 0.95, 0.5)),
            Part(_rect(-0.8, -0.75, -0.48, -0.25), (40, 40, 40)),
            Part(_rect(0.38, -0.65, 0.78, -0.22), (185, 220, 250)),
            Part(_circle(-0.62, 0.55, 0.24), shade=0.45),
            Part(_circle(-0.05, 0.55, 0.24), shade=0.45),
            Part(_circle(0.58, 0.55, 0.24), shade=0.45),
        ]
    raise ValueError(f"no drawing for class {name!r}")


# Largest rotation (radians) each class is drawn with, and whether it may be mirrored.
_ROTATION = {
    "ball": np.pi,
    "star": np.pi,
    "box": 0.35,
    "heart": 0.45,
    "fish": 0.5,
    "tree": 0.15,
    "car": 0.15,
    "bee": np.pi,
    "cloud": 0.15,
    "clock": np.pi,
    "kite": 0.5,
    "phone": 0.45,
    "moon": 0.6,
    "drum": 0.25,
    "boat": 0.2,
    "house": 0.15,
    "cup": 0.3,
    "frog": 0.3,
    "horn": 0.5,
    "train": 0.15,
}
_MIRROR = {"fish", "car", "bee", "moon", "boat", "cup", "horn", "train"}


@dataclass(frozen=True)
class ObjectSpec:
    """One placed object: class, centre (x, y) in pixels, half-size in pixels, rotation in
    radians, mirror flag, body colour and part details."""

    cls: ToyClass
    center: tuple[float, float]
    half_size: float
    rotation: float
    mirror: bool
    color: Color
    parts: tuple[Part, ...]


def sample_object(
    cls: ToyClass, rng: np.random.Generator, center: tuple[float, float], half_size: float
) -> ObjectSpec:
    """Random pose, colour jitter and details for one instance of ``cls``."""
    rot = float(rng.uniform(-_ROTATION[cls.name], _ROTATION[cls.name]))
    mirror = bool(cls.name in _MIRROR and rng.random() < 0.5)
    bright = rng.uniform(0.85, 1.1)
    color = tuple(float(np.clip(c * bright + rng.uniform(-10, 10), 0, 255)) for c in cls.color)
    return ObjectSpec(cls, center, half_size, rot, mirror, color, tuple(class_parts(cls.name, rng)))


def polygon_samples(poly: np.ndarray, h: int, w: int, samples: int = SUPERSAMPLE) -> np.ndarray:
    """Which of samples x samples points per pixel lie inside ``poly`` ((N, 2) x, y in pixels;
    pixel (i, j) spans [j, j+1) x [i, i+1)): bool (h * samples, w * samples), points at
    sub-pixel centres.

    Even-odd scanline fill: each sub-pixel row's edge crossings toggle insideness for every
    sample to their right (a running parity along the row).
    """
    rows, cols = h * samples, w * samples
    yc = ((np.arange(rows) + 0.5) / samples)[:, None]
    x1, y1 = poly[:, 0], poly[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 <= yc) != (y2 <= yc)  # (rows, edges), half-open in y
    r, e = np.nonzero(crosses)
    xc = x1[e] + (yc[r, 0] - y1[e]) * (x2[e] - x1[e]) / (y2[e] - y1[e])
    first = np.clip(np.floor(xc * samples - 0.5).astype(np.int64) + 1, 0, cols)
    toggles = np.zeros((rows, cols + 1), np.int32)
    np.add.at(toggles, (r, first), 1)
    return (np.cumsum(toggles, axis=1)[:, :cols] & 1).astype(bool)


@dataclass
class Patch:
    """A rasterised object: top-left pixel (x0, y0), coverage (h, w) in [0, 1], colour (h, w, 3)."""

    x0: int
    y0: int
    coverage: np.ndarray
    rgb: np.ndarray


def rasterize(obj: ObjectSpec) -> Patch:
    """Rasterise ``obj`` into a patch around its bounding box."""
    c, s = np.cos(obj.rotation), np.sin(obj.rotation)
    rot = np.array([[c, -s], [s, c]])
    flip = np.array([-1.0 if obj.mirror else 1.0, 1.0])
    polys = [(p.polygon * flip) @ rot.T * obj.half_size + np.asarray(obj.center) for p in obj.parts]
    allp = np.concatenate(polys)
    x0, y0 = np.floor(allp.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(allp.max(axis=0)).astype(int) + 1
    w, h = x1 - x0, y1 - y0
    k = SUPERSAMPLE
    insides: list[np.ndarray] = []
    colors = np.zeros((h * k, w * k, 3), np.float32)  # per sample: the topmost part's colour
    for part, poly in zip(obj.parts, polys):
        inside = polygon_samples(poly - [x0, y0], h, w)
        if part.clip is not None:
            inside &= insides[part.clip]
        insides.append(inside)
        color = np.asarray(part.color if part.color is not None else obj.color, np.float32)
        colors[inside] = color * part.shade
    covered = np.logical_or.reduce(insides)
    coverage = covered.reshape(h, k, w, k).mean(axis=(1, 3)).astype(np.float32)
    summed = colors.reshape(h, k, w, k, 3).sum(axis=(1, 3)) / (k * k)
    rgb = np.where(coverage[..., None] > 0, summed / np.maximum(coverage[..., None], 1e-6), 0)
    return Patch(int(x0), int(y0), coverage, rgb.astype(np.float32))


def paste(
    canvas: np.ndarray,
    masks: tuple[np.ndarray, ...],
    values: tuple[int, ...],
    patch: Patch,
    dx: int = 0,
    dy: int = 0,
) -> None:
    """Alpha-composite ``patch`` (shifted by (dx, dy)) onto ``canvas`` (H, W, 3) float in place
    and write ``values[i]`` into ``masks[i]`` (H, W) where its coverage is >= 0.5."""
    H, W = canvas.shape[:2]
    h, w = patch.coverage.shape
    x0, y0 = patch.x0 + dx, patch.y0 + dy
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    cov = patch.coverage[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    col = patch.rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    region = canvas[cy0:cy1, cx0:cx1]
    canvas[cy0:cy1, cx0:cx1] = region * (1 - cov) + col * cov
    inside = cov[..., 0] >= 0.5
    for mask, value in zip(masks, values):
        mask[cy0:cy1, cx0:cx1][inside] = value


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted random background (size, size, 3) float in [0, 255]: a two-colour gradient in a
    random direction plus a few soft blobs. Its colours carry no class information."""

    def muted() -> np.ndarray:
        hue = rng.uniform(0, 1)
        sat, val = rng.uniform(0.08, 0.4), rng.uniform(0.3, 0.75)
        return _hsv_to_rgb(hue, sat, val)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle), 0, 1)[..., None]
    img = muted() * (1 - t) + muted() * t
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0, 1, size=2)
        r = rng.uniform(0.1, 0.35)
        a = 0.5 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - a) + muted() * a
    return img.astype(np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return np.asarray(rgb, np.float32) * 255.0


def finish(canvas: np.ndarray, rng: np.random.Generator, noise: float = 4.0) -> np.ndarray:
    """Add sensor-like pixel noise and quantise to uint8 (H, W, 3)."""
    noisy = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
