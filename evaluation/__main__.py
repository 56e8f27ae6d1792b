"""``python -m evaluation COMMAND``: the paper's measurements of a trained DenseAV model.

Commands: ``segmentation`` (speech/sound-prompted, sec. 4.2-4.3), ``retrieval`` (sec. 4.4),
``disentanglement`` (sec. 4.5). Each writes ``NAME.json`` and ``NAME.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evaluation.report import markdown_table, percent, segmentation_markdown, write_report


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="checkpoint folder written by DenseAV.save_pretrained"
    )
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
        default=50,
        help="classes with an example grid (default 50; 0: none)",
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
    return parser


def run_segmentation(args: argparse.Namespace) -> list[Path]:
    from evaluation.datasets import load_prompted_set
    from evaluation.runtime import load_model, model_image_size, pick_device
    from evaluation.segmentation import SegmentationSettings, evaluate_segmentation

    device = pick_device(args.device)
    prompted = load_prompted_set(args.data, kind=args.kind)
    model = load_model(args.model, device)
    settings = SegmentationSettings(
        image_size=args.image_size,
        label_size=args.label_size,
        batch_size=args.batch_size,
        grid_classes=args.grid_classes,
        seed=args.seed,
    )
    out = Path(args.out)
    result = evaluate_segmentation(model, prompted, settings, out, device)
    image_size = args.image_size or model_image_size(model)
    report = result.to_dict() | {
        "model": str(args.model),
        "data": str(args.data),
        "prompts": len(prompted),
        "image_size": image_size,
        "label_size": args.label_size or image_size,
        "settings": vars(settings),
    }
    name = f"segmentation_{prompted.kind}"
    paths = write_report(out, name, report, segmentation_markdown(report))
    s = result.summary
    print(
        f"{prompted.kind}-prompted segmentation: mAP {percent(s['mAP'])}, mIoU {percent(s['mIoU'])} "
        f"(chance mAP {percent(s['chance_mAP'])}) over {s['classes']} classes"
    )
    return [*paths, *(out / e for e in result.examples.values())]


def run_retrieval(args: argparse.Namespace) -> list[Path]:
    from evaluation.pairs import count_pairs, iter_pairs
    from evaluation.retrieval import encode_pool, evaluate_retrieval
    from evaluation.runtime import load_model, pick_device

    device = pick_device(args.device)
    model = load_model(args.model, device)
    total = min(args.pool, count_pairs(args.data))
    pool = encode_pool(
        model, iter_pairs(args.data, args.pool), args.batch_size, device, total=total
    )
    result = evaluate_retrieval(model, pool, device=device)
    report = result | {
        "model": str(args.model),
        "data": str(args.data),
        "aggregation": model.config.aggregation,
    }
    r = result["recall"]
    md = "\n".join(
        [
            f"# Cross-modal retrieval ({result['pool']}-way)",
            "",
            f"- model: `{args.model}` (aggregation: {model.config.aggregation})",
            f"- data: `{args.data}`",
            "",
            markdown_table(
                ["direction", "R@1", "R@5", "R@10", "median rank"],
                [
                    [
                        "audio -> image",
                        *(percent(r[f"a2v_R@{k}"]) for k in (1, 5, 10)),
                        result["median_rank"]["a2v"],
                    ],
                    [
                        "image -> audio",
                        *(percent(r[f"v2a_R@{k}"]) for k in (1, 5, 10)),
                        result["median_rank"]["v2a"],
                    ],
                    ["chance", *(percent(result["chance"][f"R@{k}"]) for k in (1, 5, 10)), ""],
                ],
            ),
        ]
    )
    paths = write_report(args.out, "retrieval", report, md)
    if result["pool"] < args.pool:
        print(
            f"note: the data holds only {result['pool']} clips; the pool is {result['pool']}-way, not {args.pool}-way"
        )
    print(
        f"{result['pool']}-way retrieval: A->V R@1/5/10 = "
        + "/".join(percent(r[f"a2v_R@{k}"]) for k in (1, 5, 10))
        + ", V->A R@1/5/10 = "
        + "/".join(percent(r[f"v2a_R@{k}"]) for k in (1, 5, 10))
    )
    return list(paths)


def run_disentanglement(args: argparse.Namespace) -> list[Path]:
    from evaluation.disentanglement import clip_head_scores, evaluate_disentanglement
    from evaluation.pairs import count_pairs, iter_pairs
    from evaluation.runtime import load_model, pick_device

    device = pick_device(args.device)
    model = load_model(args.model, device)
    if model.config.heads != 2:
        raise SystemExit(
            f"{args.model}: disentanglement needs a two-head model; this one has {model.config.heads} head(s)"
        )
    scores = {}
    for name, data in (("sound", args.sound_data), ("speech", args.speech_data)):
        total = min(args.clips, count_pairs(data))
        scores[name] = clip_head_scores(
            model, iter_pairs(data, args.clips), args.batch_size, device, f"{name} clips", total
        )
    sound, speech = scores["sound"], scores["speech"]
    result = evaluate_disentanglement(sound, speech)
    report = result | {
        "model": str(args.model),
        "sound_data": str(args.sound_data),
        "speech_data": str(args.speech_data),
    }
    means = result["mean_scaled_activation"]
    md = "\n".join(
        [
            "# Disentanglement of the two heads",
            "",
            f"- model: `{args.model}`",
            f"- sound clips: {result['clips']['sound']} from `{args.sound_data}`",
            f"- language clips: {result['clips']['language']} from `{args.speech_data}`",
            "",
            markdown_table(
                ["PredDis", "ActDis"], [[percent(result["PredDis"]), percent(result["ActDis"])]]
            ),
            "",
            "Mean min-max scaled activation per head (1 = the head's strongest clip):",
            "",
            markdown_table(
                ["head", "sound clips", "language clips"],
                [
                    [
                        k + (" (sound head)" if k == f"head{result['sound_head']}" else ""),
                        f"{v['sound']:.3f}",
                        f"{v['language']:.3f}",
                    ]
                    for k, v in means.items()
                ],
            ),
        ]
    )
    paths = write_report(args.out, "disentanglement", report, md)
    print(
        f"PredDis {percent(result['PredDis'])}, ActDis {percent(result['ActDis'])}; sound head: {result['sound_head']}"
    )
    return list(paths)


COMMANDS = {
    "segmentation": run_segmentation,
    "retrieval": run_retrieval,
    "disentanglement": run_disentanglement,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = COMMANDS[args.command](args)
    shown = ", ".join(str(p) for p in paths[:2]) + (
        f" and {len(paths) - 2} example pictures" if len(paths) > 2 else ""
    )
    print(f"wrote {shown} (folder {Path(args.out).resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
