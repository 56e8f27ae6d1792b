"""The measurements as functions: load a checkpoint, measure, write ``NAME.json`` and ``NAME.md``.

``python -m evaluation`` maps its sub-commands onto these; the ablation calls them per model.
Each returns ``(report dict, written paths)`` and prints a one-line result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.datasets import load_prompted_set
from evaluation.disentanglement import clip_head_scores, evaluate_disentanglement
from evaluation.pairs import count_pairs, iter_pairs
from evaluation.report import (
    disentanglement_markdown,
    percent,
    retrieval_markdown,
    segmentation_markdown,
    write_report,
)
from evaluation.retrieval import encode_pool, evaluate_retrieval
from evaluation.runtime import load_model, model_image_size, pick_device
from evaluation.segmentation import SegmentationSettings, evaluate_segmentation

Report = tuple[dict[str, Any], list[Path]]


def segmentation(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    kind: str | None = None,
    settings: SegmentationSettings | None = None,
    device: str | None = None,
) -> Report:
    """Prompted segmentation of one set; writes ``segmentation_{kind}.{json,md}`` and grids."""
    settings = settings or SegmentationSettings()
    torch_device = pick_device(device)
    prompted = load_prompted_set(data, kind=kind)
    net = load_model(model, torch_device)
    out = Path(out)
    result = evaluate_segmentation(net, prompted, settings, out, torch_device)
    image_size = settings.image_size or model_image_size(net)
    report = result.to_dict() | {
        "model": str(model),
        "data": str(data),
        "prompts": len(prompted),
        "image_size": image_size,
        "label_size": settings.label_size or image_size,
        "settings": vars(settings),
    }
    paths = write_report(
        out, f"segmentation_{prompted.kind}", report, segmentation_markdown(report)
    )
    s = result.summary
    print(
        f"{prompted.kind}-prompted segmentation: mAP {percent(s['mAP'])}, mIoU {percent(s['mIoU'])}"
        f" (chance mAP {percent(s['chance_mAP'])}), pointing game {percent(s['pointing'])}"
        f" over {s['classes']} classes"
    )
    return report, [*paths, *(out / e for e in result.examples.values())]


def retrieval(
    model: str | Path,
    data: str,
    out: str | Path,
    pool: int = 1000,
    batch_size: int = 16,
    device: str | None = None,
) -> Report:
    """``pool``-way retrieval over the first clips of ``data``; writes ``retrieval.{json,md}``."""
    torch_device = pick_device(device)
    net = load_model(model, torch_device)
    total = min(pool, count_pairs(data))
    encoded = encode_pool(net, iter_pairs(data, pool), batch_size, torch_device, total=total)
    result = evaluate_retrieval(net, encoded, device=torch_device)
    report = result | {
        "model": str(model),
        "data": str(data),
        "aggregation": net.config.aggregation,
    }
    paths = write_report(out, "retrieval", report, retrieval_markdown(report))
    n, r = result["pool"], result["recall"]
    if n < pool:
        print(f"note: the data holds only {n} clips; the pool is {n}-way, not {pool}-way")
    print(
        f"{n}-way retrieval: A->V R@1/5/10 = "
        + "/".join(percent(r[f"a2v_R@{k}"]) for k in (1, 5, 10))
        + ", V->A R@1/5/10 = "
        + "/".join(percent(r[f"v2a_R@{k}"]) for k in (1, 5, 10))
    )
    return report, list(paths)


def disentanglement(
    model: str | Path,
    sound_data: str,
    speech_data: str,
    out: str | Path,
    clips: int = 500,
    batch_size: int = 16,
    device: str | None = None,
) -> Report:
    """PredDis/ActDis of a two-head model; writes ``disentanglement.{json,md}``."""
    torch_device = pick_device(device)
    net = load_model(model, torch_device)
    if net.config.heads != 2:
        raise ValueError(
            f"{model}: disentanglement needs a two-head model; this one has {net.config.heads} head(s)"
        )
    scores = {}
    for name, data in (("sound", sound_data), ("speech", speech_data)):
        total = min(clips, count_pairs(data))
        scores[name] = clip_head_scores(
            net, iter_pairs(data, clips), batch_size, torch_device, f"{name} clips", total
        )
    result = evaluate_disentanglement(scores["sound"], scores["speech"])
    report = result | {
        "model": str(model),
        "sound_data": str(sound_data),
        "speech_data": str(speech_data),
    }
    paths = write_report(out, "disentanglement", report, disentanglement_markdown(report))
    print(
        f"PredDis {percent(result['PredDis'])}, ActDis {percent(result['ActDis'])};"
        f" sound head: {result['sound_head']}"
    )
    return report, list(paths)
