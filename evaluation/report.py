"""Reports: every measurement writes a JSON file (for machines) and a Markdown summary (for people)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Top-1 misses a retrieval summary lists per direction (the JSON lists every query).
MAX_LISTED_MISSES = 20
# Hubs (candidates retrieved first in place of several partners) a summary names per direction.
MAX_LISTED_HUBS = 5
# Retrieval directions: report key and the words a summary uses.
RETRIEVAL_DIRECTIONS = (("a2v", "audio -> image"), ("v2a", "image -> audio"))


def percent(x: float) -> str:
    """``0.4821 -> '48.2%'``."""
    return f"{100 * x:.1f}%"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(
    out_dir: str | os.PathLike, name: str, report: Mapping[str, Any], markdown: str
) -> tuple[Path, Path]:
    """Write ``{out_dir}/{name}.json`` and ``{out_dir}/{name}.md``; returns both paths.

    Each file is written under a temporary name and renamed, so a reader never sees half a report.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.json", out / f"{name}.md")
    for path, text in zip(paths, (json.dumps(report, indent=2) + "\n", markdown.rstrip() + "\n")):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths


def segmentation_markdown(report: Mapping[str, Any]) -> str:
    """The readable summary of a segmentation report (see ``SegmentationResult.to_dict``)."""
    s = report["summary"]
    kind = report["kind"]
    pad = report["settings"]["word_pad_seconds"]
    span = f"the word span +-{pad:.2f} s" if kind == "speech" else "the whole clip"
    lines = [
        f"# {kind.capitalize()}-prompted semantic segmentation",
        "",
        f"- model: `{report['model']}`",
        f"- data: `{report['data']}` ({report['prompts']} prompts, {s['classes']} classes scored)",
        f"- heatmaps: max over heads, time average over {span}"
        + f", bilinear to {report['label_size']} px labels after resize + centre crop",
        "",
        markdown_table(
            ["mAP", "mIoU", "chance mAP (mean mask fraction)", "pointing game"],
            [[percent(s[key]) for key in ("mAP", "mIoU", "chance_mAP", "pointing")]],
        ),
        "",
        (
            "Pointing game: the share of a class's prompts whose heatmap peaks on the class's"
            " pixels (a diagnostic beside the paper's measures: where both AP and the pointing"
            " game are low, the heat peaks off the object, beside it or on another, rather than"
            " only blurring it)."
        ),
        "",
        "## Per class",
        "",
    ]
    rows = []
    for c in sorted(report["classes"], key=lambda c: -c["ap"]):
        example = report["examples"].get(str(c["class_id"]))
        rows.append(
            [
                c["name"],
                c["class_id"],
                c["prompts"],
                percent(c["ap"]),
                percent(c["iou"]),
                percent(c["positive_fraction"]),
                percent(c["pointing"]),
                f"[grid]({example})" if example else "",
            ]
        )
    lines.append(
        markdown_table(
            ["class", "id", "prompts", "AP", "IoU", "mask fraction", "pointing", "examples"], rows
        )
    )
    if report["skipped_classes"]:
        lines += ["", "## Not scored", ""]
        lines += [
            f"- class {c['class_id']} ({c['prompts']} prompts): {c['reason']}"
            for c in report["skipped_classes"]
        ]
    return "\n".join(lines)


def retrieval_markdown(report: Mapping[str, Any]) -> str:
    """The readable summary of a retrieval report (see ``commands.retrieval``)."""
    r, ranks = report["recall"], report["median_rank"]
    rows = [
        [title, *(percent(r[f"{d}_R@{k}"]) for k in (1, 5, 10)), ranks[d]]
        for d, title in RETRIEVAL_DIRECTIONS
    ]
    rows.append(["chance", *(percent(report["chance"][f"R@{k}"]) for k in (1, 5, 10)), ""])
    lines = [
        f"# Cross-modal retrieval ({report['pool']}-way)",
        "",
        f"- model: `{report['model']}` (aggregation: {report['aggregation']})",
        f"- data: `{report['data']}` (the first {report['pool']} clips)",
        "",
        markdown_table(["direction", "R@1", "R@5", "R@10", "median rank"], rows),
    ]
    for direction, title in RETRIEVAL_DIRECTIONS:
        misses = [q for q in report["queries"][direction] if q["rank"] > 1]
        if misses:
            lines += [
                "",
                f"## {title}: {len(misses)} queries whose partner is not ranked first"
                + (f" (the first {MAX_LISTED_MISSES})" if len(misses) > MAX_LISTED_MISSES else ""),
                "",
            ]
            hubs = report["hubs"][direction][:MAX_LISTED_HUBS]
            if hubs:
                lines += [
                    "Retrieved first in place of the partner most often: "
                    + ", ".join(f"`{h['key']}` ({h['queries']} queries)" for h in hubs),
                    "",
                ]
            lines.append(
                markdown_table(
                    ["query", "rank of its partner", "retrieved first"],
                    [[q["key"], q["rank"], q["top"]] for q in misses[:MAX_LISTED_MISSES]],
                )
            )
    return "\n".join(lines)


def disentanglement_markdown(report: Mapping[str, Any]) -> str:
    """The readable summary of a disentanglement report (see ``commands.disentanglement``)."""
    sound_head = f"head{report['sound_head']}"
    rows = [
        [
            k + (" (sound head)" if k == sound_head else ""),
            f"{v['sound']:.3f}",
            f"{v['language']:.3f}",
        ]
        for k, v in report["mean_scaled_activation"].items()
    ]
    return "\n".join(
        [
            "# Disentanglement of the two heads",
            "",
            f"- model: `{report['model']}`",
            f"- sound clips: {report['clips']['sound']} from `{report['sound_data']}`",
            f"- language clips: {report['clips']['language']} from `{report['speech_data']}`",
            "",
            markdown_table(
                ["PredDis", "ActDis"], [[percent(report["PredDis"]), percent(report["ActDis"])]]
            ),
            "",
            "Mean min-max scaled activation per head (1 = the head's strongest clip):",
            "",
            markdown_table(["head", "sound clips", "language clips"], rows),
        ]
    )
