"""Command line: ``python -m ingest.toyworld --out DIR --seed S [--size NAME] [counts...]``."""

from __future__ import annotations

import argparse
import time

from ingest.toyworld.classes import CLASSES
from ingest.toyworld.config import SIZES, WorldConfig, preset
from ingest.toyworld.world import generate_world


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingest.toyworld",
        description="Generate a toy audio-visual world: a PlacesAudio-style speech corpus, an "
        "AudioSet-style MP4 sound corpus and held-out DenseAV-style prompted "
        "segmentation sets, with a manifest.json.",
    )
    p.add_argument("--out", required=True, help="output folder (empty or new; see --force)")
    p.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    p.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="default",
        help="size preset: tiny (tests, seconds), small, default (demo), large",
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a previous world in --out (removes only generator outputs)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        help=f"use the first N of the {len(CLASSES)} classes (default {WorldConfig.num_classes})",
    )
    for kind, corpus in (
        ("speech", "the captions name and the stills show"),
        ("sound", "the videos show and make heard"),
    ):
        p.add_argument(
            f"--{kind}-classes",
            nargs="+",
            metavar="NAME",
            help=f"only these classes (at least 3) {corpus}, and the {kind} prompts ask for "
            "(default: all)",
        )
    p.add_argument("--speech-train", type=int, help="PlacesAudio train captions")
    p.add_argument("--speech-val", type=int, help="PlacesAudio val captions")
    p.add_argument("--videos", type=int, help="AudioSet-style training videos")
    p.add_argument("--eval-videos", type=int, help="held-out AudioSet-style videos")
    p.add_argument(
        "--retrieval-videos",
        type=int,
        help="held-out 10 s videos for sound retrieval, their objects heard in turn",
    )
    p.add_argument("--min-video-seconds", type=int, help="shortest video (s, >= 10)")
    p.add_argument("--max-video-seconds", type=int, help="longest video (s)")
    p.add_argument("--eval-per-class", type=int, help="prompts per class in each eval set")
    p.add_argument("--image-size", type=int, help="image and video side in pixels (default 128)")
    p.add_argument(
        "--object-scale",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="object half-size range as a fraction of the image side (default 0.14 0.24)",
    )
    p.add_argument("--fps", type=int, help="video frame rate (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse_world_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, WorldConfig]:
    """The command line's arguments and the world configuration they describe (usage errors exit)."""
    p = _parser()
    args = p.parse_args(argv)
    try:
        cfg = preset(
            args.size,
            seed=args.seed,
            num_classes=args.num_classes,
            speech_train=args.speech_train,
            speech_val=args.speech_val,
            videos=args.videos,
            eval_videos=args.eval_videos,
            retrieval_videos=args.retrieval_videos,
            min_video_seconds=args.min_video_seconds,
            max_video_seconds=args.max_video_seconds,
            eval_per_class=args.eval_per_class,
            image_size=args.image_size,
            object_scale=tuple(args.object_scale) if args.object_scale else None,
            fps=args.fps,
            speech_classes=tuple(args.speech_classes) if args.speech_classes else None,
            sound_classes=tuple(args.sound_classes) if args.sound_classes else None,
        )
    except ValueError as e:
        p.error(str(e))
    seg = cfg.segment_seconds
    if cfg.min_video_seconds < seg or cfg.max_video_seconds // seg < cfg.min_video_seconds // seg:
        p.error(
            f"need {seg} <= --min-video-seconds <= --max-video-seconds (videos last a "
            f"whole number of {seg} s segments)"
        )
    low, high = cfg.object_scale
    if not 0 < low <= high <= 0.45:
        p.error("need 0 < MIN <= MAX <= 0.45 for --object-scale")
    return args, cfg


def main(argv: list[str] | None = None) -> None:
    args, cfg = parse_world_args(argv)
    t0 = time.time()
    manifest = generate_world(
        cfg,
        args.out,
        workers=args.workers,
        size_name=args.size,
        force=args.force,
        progress=not args.quiet,
    )
    counts = ", ".join(f"{k}={v}" for k, v in manifest["counts"].items())
    print(
        f"toyworld: wrote {args.out} in {time.time() - t0:.1f} s ({counts}); "
        f"see {args.out}/manifest.json"
    )


if __name__ == "__main__":
    main()
