"""A contact sheet of a generated world: training images with their captions, evaluation images
with their class masks, and the audio files to listen to.

    python -m ingest.toyworld.preview --world DIR [--out DIR/preview.png] [--count 6]
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from evaluation.datasets import load_prompted_set, read_ade_seg, read_image
from ingest.sources.placesaudio_meta import read_metadata


def preview(world: Path, out: Path, count: int = 6) -> list[str]:
    """Draw ``count`` columns (caption images; eval images; their masks) into ``out``; returns
    the WAV files shown, for listening."""
    manifest = json.loads((world / "manifest.json").read_text())
    names = {c["ade_class_id"]: c["name"] for c in manifest["classes"]}
    utts = read_metadata(world / manifest["paths"]["placesaudio_metadata"]["train"])[:count]
    prompts = load_prompted_set(world / manifest["paths"]["eval_speech"]).prompts[:count]
    palette = colormaps["tab20"](np.linspace(0, 1, 20))[:, :3]
    fig = Figure(figsize=(2.2 * count, 7.4))
    axes = fig.subplots(3, count, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, u in enumerate(utts):
        axes[0, i].imshow(read_image(u.image))
        axes[0, i].set_title("\n".join(textwrap.wrap(u.asr_text, 22)), fontsize=7)
    for i, p in enumerate(prompts):
        image = read_image(p.image_path)
        seg = read_ade_seg(p.seg_path)
        colour = np.where(seg[..., None] > 0, palette[seg % 20] * 255, image * 0.35)
        axes[1, i].imshow(image)
        axes[1, i].set_title(f"prompt: {names[p.ade_class_id]}", fontsize=8)
        axes[2, i].imshow(colour.astype(np.uint8))
        present = ", ".join(names[c] for c in np.unique(seg) if c > 0)
        axes[2, i].set_title("\n".join(textwrap.wrap(f"mask: {present}", 22)), fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return [u.wav for u in utts] + [str(p.audio_path) for p in prompts]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m ingest.toyworld.preview",
        description="Draw a contact sheet of a toy world (images, captions, masks) and list "
        "the caption and prompt WAVs to listen to.",
    )
    p.add_argument("--world", required=True, type=Path, help="a folder made by ingest.toyworld")
    p.add_argument("--out", type=Path, help="PNG to write (default WORLD/preview.png)")
    p.add_argument("--count", type=int, default=6, help="columns (default 6)")
    args = p.parse_args(argv)
    out = args.out or args.world / "preview.png"
    wavs = preview(args.world, out, args.count)
    print(f"wrote {out}\nlisten to (in the order shown):")
    for w in wavs:
        print(f"  {w}")


if __name__ == "__main__":
    main()
