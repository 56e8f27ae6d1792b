"""Speech- and sound-prompted semantic segmentation (paper sections 4.2 and 4.3).

For every prompt of a set (see :mod:`evaluation.datasets`): the image goes through the model's
input transform (shorter side resized to the input size, centre crop), the label map through the
same geometry (nearest neighbour) at the label resolution; the prompted heatmap (max over heads,
time-averaged over the word span +-0.2 s or the whole clip) is bilinearly upsampled to the label
resolution. Per class, the pixels of all its prompts are pooled and scored (AP, best-of-20 IoU);
mAP and mIoU average over classes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from denseav.model import DenseAV
from evaluation import pictures
from evaluation.datasets import Prompt, PromptedSet, PromptedSetError, read_ade_seg, read_image
from evaluation.heatmaps import WORD_PAD_SECONDS, prompt_sample_mask, prompted_heatmaps, upsample
from evaluation.media import SAMPLE_RATE, load_audio, resize_center_crop
from evaluation.metrics import (
    ClassScore,
    binary_average_precision,
    class_segmentation_score,
    mean_class_scores,
)
from evaluation.runtime import audio_batch, batched, image_batch, model_image_size


@dataclass
class SegmentationSettings:
    """How the segmentation evaluation runs.

    Attributes:
        image_size: model input size; None = the size the image backbone was built for.
        label_size: side of the (square, centre-cropped) label map the heatmaps are scored at;
            None = ``image_size``.
        batch_size: prompts per forward pass.
        word_pad_seconds: padding on each side of a speech prompt's word span (paper: 0.2 s).
        grid_classes: at most this many classes (the best-scoring first) get an example grid
            of their best, worst and a random prompt; None = every class, 0 = none.
        seed: chooses the random example of each grid.
    """

    image_size: int | None = None
    label_size: int | None = None
    batch_size: int = 8
    word_pad_seconds: float = WORD_PAD_SECONDS
    grid_classes: int | None = None
    seed: int = 0


@dataclass
class PromptResult:
    """What is kept per prompt: low-resolution maps and the label mask at label resolution."""

    prompt: Prompt
    combined: np.ndarray  # (h, w) max over heads, prompt time average
    per_head: np.ndarray  # (K, h, w)
    mask: np.ndarray  # (L, L) bool, pixels of the prompted class
    ap: float | None = None  # this prompt's own AP (for picking examples), None without pixels


@dataclass
class SegmentationResult:
    """Scores of one set: per class and the means over classes."""

    kind: str
    summary: dict[str, float]
    classes: list[ClassScore]
    class_names: dict[int, str]
    skipped_classes: list[dict] = field(default_factory=list)
    examples: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "summary": self.summary,
            "classes": [
                asdict(c) | {"name": self.class_names.get(c.class_id)} for c in self.classes
            ],
            "skipped_classes": self.skipped_classes,
            "examples": {str(k): v for k, v in self.examples.items()},
        }


def label_mask(prompt: Prompt, size: int) -> np.ndarray:
    """The prompted class's pixels ``(size, size)`` bool, after the model input's resize and
    centre crop (nearest neighbour, so class ids are never blended)."""
    classes = read_ade_seg(prompt.seg_path)
    return resize_center_crop(classes, size, resample=Image.NEAREST) == prompt.ade_class_id


@torch.no_grad()
def compute_prompt_heatmaps(
    model: DenseAV,
    prompted: PromptedSet,
    settings: SegmentationSettings,
    device: torch.device | str = "cpu",
) -> list[PromptResult]:
    """Run the model over every prompt of the set (in eval mode) and keep its heatmaps and mask."""
    image_size = settings.image_size or model_image_size(model)
    label_size = settings.label_size or image_size
    results: list[PromptResult] = []
    with tqdm(total=len(prompted), desc=f"{prompted.kind} prompts", unit="prompt") as bar:
        for batch in batched(prompted.prompts, settings.batch_size):
            images = image_batch(
                [resize_center_crop(read_image(p.image_path), image_size) for p in batch], device
            )
            waveform, sample_mask, lengths = audio_batch(
                [load_audio(p.audio_path) for p in batch], device
            )
            try:
                prompt_mask = prompt_sample_mask(
                    [p.timing for p in batch],
                    lengths,
                    waveform.shape[1],
                    SAMPLE_RATE,
                    settings.word_pad_seconds,
                )
            except ValueError as err:
                raise PromptedSetError(
                    f"{prompted.root}: prompts of CSV rows {[p.row for p in batch]}: {err}"
                ) from err
            maps = prompted_heatmaps(model, images, waveform, sample_mask, prompt_mask.to(device))
            for i, p in enumerate(batch):
                results.append(
                    PromptResult(
                        prompt=p,
                        combined=maps.combined[i].cpu().numpy(),
                        per_head=maps.per_head[i].cpu().numpy(),
                        mask=label_mask(p, label_size),
                    )
                )
            bar.update(len(batch))
    return results


def _upsampled(results: Sequence[PromptResult]) -> list[np.ndarray]:
    return [upsample(torch.from_numpy(r.combined)[None], r.mask.shape)[0].numpy() for r in results]


def score_classes(results: Sequence[PromptResult]) -> tuple[list[ClassScore], list[dict]]:
    """Per class: pool the upsampled heatmaps and masks of all its prompts, AP and IoU.

    Also fills each prompt's own AP (for choosing example pictures). Upsampled maps live only
    while their class is scored, so memory stays at one class's pixels.

    Returns:
        ``(scores of scorable classes, skipped classes with the reason)``.
    """
    scores, skipped = [], []
    for class_id, members in sorted(group_by_class(results).items()):
        maps = _upsampled(members)
        for r, m in zip(members, maps):
            r.ap = binary_average_precision(m, r.mask) if r.mask.any() else None
        try:
            scores.append(class_segmentation_score(class_id, maps, [r.mask for r in members]))
        except ValueError as err:
            skipped.append({"class_id": class_id, "prompts": len(members), "reason": str(err)})
    return scores, skipped


def group_by_class(results: Sequence[PromptResult]) -> dict[int, list[PromptResult]]:
    """Prompt results by prompted class id, in input order."""
    by_class: dict[int, list[PromptResult]] = defaultdict(list)
    for r in results:
        by_class[r.prompt.ade_class_id].append(r)
    return by_class


def _panel(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def example_grid(
    members: Sequence[PromptResult],
    rng: np.random.Generator,
    class_label: str,
    display: int = 160,
) -> np.ndarray:
    """Rows best / worst / random prompt of one class (by the prompt's own AP): image with the
    true mask outlined, the max-over-heads heatmap on the class's common scale, and each head's
    map in its own colour."""
    ranked = sorted(
        (i for i, r in enumerate(members) if r.ap is not None), key=lambda i: -members[i].ap
    )
    ranked = ranked or list(range(len(members)))
    picks = [
        ("best", ranked[0]),
        ("worst", ranked[-1]),
        ("random", int(rng.integers(len(members)))),
    ]
    # Bilinear upsampling stays within the low-resolution range, so it sets the common scale.
    lo = float(min(r.combined.min() for r in members))
    hi = float(max(r.combined.max() for r in members))
    rows = []
    for label, i in picks:
        r = members[i]
        heat = _upsampled([r])[0]
        size = r.mask.shape[0]
        image = resize_center_crop(read_image(r.prompt.image_path), size)
        heads = upsample(torch.from_numpy(r.per_head)[None], r.mask.shape)[0].numpy()
        ap = "n/a" if r.ap is None else f"{r.ap:.2f}"
        rows.append(
            [
                pictures.caption(
                    _panel(pictures.outline_mask(image, r.mask), display), f"{label}: AP {ap}"
                ),
                pictures.caption(
                    _panel(
                        pictures.overlay_heatmap(image, pictures.scale_unit(heat, lo, hi)), display
                    ),
                    "max over heads",
                ),
                pictures.caption(
                    _panel(pictures.overlay_heads(image, pictures.scale_unit(heads)), display),
                    "per head",
                ),
            ]
        )
    title = pictures.caption(np.zeros((1, display * 3, 3), np.uint8), class_label, size=14)
    legend = pictures.head_legend([f"head {k}" for k in range(members[0].per_head.shape[0])])
    return pictures.grid([[title], [legend]] + rows)


def evaluate_segmentation(
    model: DenseAV,
    prompted: PromptedSet,
    settings: SegmentationSettings,
    out_dir: Path | None = None,
    device: torch.device | str = "cpu",
) -> SegmentationResult:
    """The whole measurement of one set; writes example grids under ``out_dir/examples`` if given."""
    model.eval()
    results = compute_prompt_heatmaps(model, prompted, settings, device)
    scores, skipped = score_classes(results)
    if not scores:
        raise ValueError(f"{prompted.root}: no class could be scored: {skipped}")
    names = {p.ade_class_id: p.class_name or str(p.ade_class_id) for p in prompted.prompts}
    result = SegmentationResult(prompted.kind, mean_class_scores(scores), scores, names, skipped)
    if out_dir is not None and settings.grid_classes != 0:
        rng = np.random.default_rng(settings.seed)
        by_class = group_by_class(results)
        folder = Path(out_dir) / "examples"
        folder.mkdir(parents=True, exist_ok=True)
        chosen = sorted(scores, key=lambda c: -c.ap)[: settings.grid_classes]
        for c in tqdm(chosen, desc="example grids", unit="class"):
            label = f"{names[c.class_id]} (class {c.class_id}): AP {c.ap:.3f}, IoU {c.iou:.3f}"
            picture = example_grid(by_class[c.class_id], rng, label)
            path = folder / f"class_{c.class_id:05d}.png"
            pictures.save_png(path, picture)
            result.examples[c.class_id] = str(path.relative_to(out_dir))
    return result
