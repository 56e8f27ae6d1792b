"""``python -m evaluation COMMAND``: the paper's measurements of a trained DenseAV model.

Commands: ``segmentation`` (speech/sound-prompted, sec. 4.2-4.3), ``retrieval`` (sec. 4.4),
``disentanglement`` (sec. 4.5), each writing ``NAME.json`` and ``NAME.md`` to ``--out``;
``ablation`` (Table 4); ``pool`` (a retrieval pool whose clips can be told apart).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation import MODEL_HELP


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument(
        "--out",
        default="eval_out",
        help="output folder for the JSON and Markdown reports (default: eval_out)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=16, help="clips per forward pass (default 16)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    seg = sub.add_parser(
        "segmentation",
        help="speech- or sound-prompted semantic segmentation (mAP, mIoU)",
        description="Prompted semantic segmentation on a folder in the released DenseAV "
        "format (prompted_segmentation.csv, frames/, audio/, annotations/*_seg.png).",
    )
    _common(seg)
    seg.add_argument("--data", required=True, help="prompted-segmentation folder")
    seg.add_argument(
        "--kind",
        choices=("speech", "sound"),
        default=None,
        help="prompt kind (default: inferred from the CSV columns)",
    )
    seg.add_argument(
        "--image-size", type=int, default=None, help="model input side (default: the backbone's)"
    )
    seg.add_argument(
        "--label-size",
        type=int,
        default=None,
        help="label side the heatmaps are scored at (default: image size)",
    )
    seg.add_argument(
        "--grid-classes",
        type=int,
        default=None,
        help="classes with an example grid, best-scoring first (default: all; 0: none)",
    )
    seg.add_argument("--seed", type=int, default=0, help="seed of the random example per class")

    ret = sub.add_parser(
        "retrieval",
        help="cross-modal retrieval R@1/5/10 both ways",
        description="N-way cross-modal retrieval over the first --pool clips of a shards "
        "dataset (folder, s3:// prefix or index.json) or a prompted-segmentation folder.",
    )
    _common(ret)
    ret.add_argument(
        "--data", required=True, help="shards dataset URL/folder/index.json, or a prompted folder"
    )
    ret.add_argument(
        "--pool", type=int, default=1000, help="clips in the retrieval pool (default 1000)"
    )

    pool = sub.add_parser(
        "pool",
        help="copy the clips of a shards dataset that can be told apart into a retrieval pool",
        description="Write a shards dataset of up to --size clips of --data whose named contents "
        "(their labels, else the class words their caption says) are pairwise incomparable: no "
        "clip names a subset of what another names. `retrieval --data` then measures it.",
    )
    pool.add_argument(
        "--data", required=True, help="source shards dataset (folder or s3:// prefix)"
    )
    pool.add_argument("--out", required=True, help="the pool's shards dataset (must not exist)")
    pool.add_argument(
        "--size", type=int, default=1000, help="most clips in the pool (default 1000)"
    )
    pool.add_argument(
        "--class-words",
        default="",
        help="comma-separated words that name content in captions (clips with labels use those)",
    )
    pool.add_argument(
        "--items-per-shard", type=int, default=100, help="clips per pool shard (default 100)"
    )

    dis = sub.add_parser(
        "disentanglement",
        help="PredDis and ActDis of a two-head model",
        description="Disentanglement (paper eq. 6-8) from clips of a sound dataset and a "
        "language dataset (each a shards dataset or a prompted folder).",
    )
    _common(dis)
    dis.add_argument("--sound-data", required=True, help="sound clips (AudioSet-like)")
    dis.add_argument("--speech-data", required=True, help="language clips (PlacesAudio-like)")
    dis.add_argument(
        "--clips", type=int, default=500, help="clips taken from each dataset (default 500)"
    )

    abl = sub.add_parser(
        "ablation",
        help="paper Table 4: train each aggregation with the same budget, evaluate, one table",
        description="Train one model per similarity aggregation with `python -m trainer.main "
        "--config CONFIG` (same budget, only model.aggregation differs), evaluate each on the same "
        "sets and write one table. Arguments not listed here (e.g. --steps 500) go to the trainer "
        "unchanged, for every run.",
        allow_abbrev=False,  # unknown options belong to the trainer, never to a prefix of ours
    )
    abl.add_argument("--config", required=True, help="trainer YAML config (e.g. configs/toy.yaml)")
    abl.add_argument("--speech-data", required=True, help="speech-prompted segmentation folder")
    abl.add_argument("--sound-data", default=None, help="sound-prompted segmentation folder")
    abl.add_argument(
        "--retrieval-data", default=None, help="retrieval clips (shards dataset or prompted folder)"
    )
    abl.add_argument("--pool", type=int, default=1000, help="retrieval pool size (default 1000)")
    abl.add_argument(
        "--aggregations",
        default="multihead,avgpool,cls,maxspace",
        help="comma-separated aggregations, in table order (default: all four)",
    )
    abl.add_argument("--out", default="ablation_out", help="output root (default: ablation_out)")
    abl.add_argument("--device", default=None, help="evaluation device (default: cuda or cpu)")
    abl.add_argument(
        "--batch-size", type=int, default=16, help="evaluation batch size (default 16)"
    )
    return parser


# The commands import torch and transformers; importing them lazily keeps --help instant.


def run_segmentation(args: argparse.Namespace) -> list[Path]:
    from evaluation import commands
    from evaluation.segmentation import SegmentationSettings

    settings = SegmentationSettings(
        image_size=args.image_size,
        label_size=args.label_size,
        batch_size=args.batch_size,
        grid_classes=args.grid_classes,
        seed=args.seed,
    )
    return commands.segmentation(args.model, args.data, args.out, args.kind, settings, args.device)[
        1
    ]


def run_retrieval(args: argparse.Namespace) -> list[Path]:
    from evaluation import commands

    return commands.retrieval(
        args.model, args.data, args.out, args.pool, args.batch_size, args.device
    )[1]


def run_disentanglement(args: argparse.Namespace) -> list[Path]:
    from evaluation import commands

    try:
        _, paths = commands.disentanglement(
            args.model,
            args.sound_data,
            args.speech_data,
            args.out,
            args.clips,
            args.batch_size,
            args.device,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    return paths


def run_pool(args: argparse.Namespace) -> list[str]:
    from evaluation.pools import build_pool
    from shards.index import INDEX_NAME
    from shards.storage import join

    words = [w.strip() for w in args.class_words.split(",") if w.strip()]
    try:
        n = build_pool(args.data, args.out, words, args.size, args.items_per_shard)
    except (FileExistsError, ValueError) as err:
        raise SystemExit(f"error: {err}") from err
    print(
        f"retrieval pool: {n} of at most {args.size} clips, none naming a subset of what "
        "another names"
    )
    return [join(args.out, INDEX_NAME)]


def run_ablation(args: argparse.Namespace) -> list[Path]:
    from evaluation.ablation import AblationPlan, run_ablation

    plan = AblationPlan(
        config=args.config,
        out=Path(args.out),
        speech_data=args.speech_data,
        sound_data=args.sound_data,
        retrieval_data=args.retrieval_data,
        pool=args.pool,
        aggregations=[a.strip() for a in args.aggregations.split(",") if a.strip()],
        train_overrides=args.train_overrides,
        batch_size=args.batch_size,
        device=args.device,
    )
    return list(run_ablation(plan)[1])


def _user_errors() -> tuple[type[Exception], ...]:
    from evaluation.datasets import PromptedSetError
    from evaluation.media import MediaError
    from shards.format import SampleError
    from shards.storage import StorageError

    return FileNotFoundError, PromptedSetError, MediaError, SampleError, StorageError


USER_ERRORS = _user_errors()

COMMANDS = {
    "segmentation": run_segmentation,
    "retrieval": run_retrieval,
    "disentanglement": run_disentanglement,
    "ablation": run_ablation,
    "pool": run_pool,
}


def main(argv: list[str] | None = None) -> int:
    from shards.storage import is_s3

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ablation":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.train_overrides = extra
    try:
        paths = COMMANDS[args.command](args)
    except USER_ERRORS as err:  # bad input: the message names the file or setting at fault
        print(f"error: {err}", file=sys.stderr)
        return 2
    shown = ", ".join(str(p) for p in paths[:2]) + (
        f" and {len(paths) - 2} example pictures" if len(paths) > 2 else ""
    )
    folder = args.out if is_s3(args.out) else Path(args.out).resolve()
    print(f"wrote {shown} (folder {folder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
