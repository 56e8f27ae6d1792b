"""Prompted segmentation end to end: a tiny random model on toy-world sets in the released format."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from evaluation.__main__ import main
from evaluation.datasets import PromptedSet, load_prompted_set, read_image
from evaluation.heatmaps import upsample
from evaluation.media import load_audio, resize_center_crop
from evaluation.predict import predict_image
from evaluation.segmentation import (
    PromptResult,
    SegmentationSettings,
    compute_prompt_heatmaps,
    label_mask,
    score_classes,
)
from ingest.toyworld.config import preset
from ingest.toyworld.evalsets import make_prompt, write_csv

CLASSES = 3
PER_CLASS = 2


@pytest.fixture(scope="module")
def eval_sets(tmp_path_factory) -> dict[str, Path]:
    """Speech and sound sets with 2 prompts for each of 3 classes; 48 px images (model input 32 px)."""
    root = tmp_path_factory.mktemp("eval_sets")
    cfg = preset("tiny", num_classes=CLASSES, image_size=48)
    sets = {}
    for kind in ("speech", "sound"):
        folder = root / kind
        write_csv(
            folder, kind, [make_prompt(cfg, folder, kind, i) for i in range(CLASSES * PER_CLASS)]
        )
        sets[kind] = folder
    return sets


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return DenseAV(DenseAVConfig.tiny()).save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.mark.parametrize("kind", ["speech", "sound"])
def test_segmentation_command_writes_reports_and_grids(
    eval_sets, model_dir, tmp_path, kind, capsys
):
    out = tmp_path / "out"
    assert (
        main(
            [
                "segmentation",
                "--model",
                str(model_dir),
                "--data",
                str(eval_sets[kind]),
                "--out",
                str(out),
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    report = json.loads((out / f"segmentation_{kind}.json").read_text())
    assert report["kind"] == kind and report["prompts"] == CLASSES * PER_CLASS
    assert report["summary"]["classes"] == CLASSES
    aps = [c["ap"] for c in report["classes"]]
    assert report["summary"]["mAP"] == pytest.approx(np.mean(aps))
    pointing = [c["pointing"] for c in report["classes"]]
    assert report["summary"]["pointing"] == pytest.approx(np.mean(pointing))
    assert all(p * PER_CLASS == pytest.approx(round(p * PER_CLASS)) for p in pointing)
    assert all(0.0 <= a <= 1.0 for a in aps)
    assert {c["name"] for c in report["classes"]} == {"ball", "star", "box"}
    for rel in report["examples"].values():
        assert (out / rel).is_file()
    assert len(report["examples"]) == CLASSES
    md = (out / f"segmentation_{kind}.md").read_text()
    assert "mAP" in md and "ball" in md and "pointing game" in md
    assert f"wrote {out}" in capsys.readouterr().out.replace(str(out.resolve()), str(out))


def test_class_ap_is_the_pooled_ap_of_upsampled_heatmaps(eval_sets, model_dir):
    model = DenseAV.from_pretrained(model_dir)
    prompted = load_prompted_set(eval_sets["speech"])
    results = compute_prompt_heatmaps(model, prompted, SegmentationSettings(batch_size=3))
    scores, skipped = score_classes(results)
    assert not skipped
    for score in scores:
        members = [r for r in results if r.prompt.ade_class_id == score.class_id]
        assert len(members) == PER_CLASS
        maps = [
            upsample(torch.from_numpy(r.combined)[None], (32, 32))[0].numpy().ravel()
            for r in members
        ]
        labels = np.concatenate([r.mask.ravel() for r in members])
        assert score.ap == pytest.approx(average_precision_score(labels, np.concatenate(maps)))
    # Heatmaps live on the full-resolution eval feature grid (32 px / patch 8), never the pooled one.
    assert results[0].combined.shape == (4, 4) and results[0].per_head.shape == (2, 4, 4)


def test_labels_follow_the_image_crop(eval_sets):
    # The toy "ball" is drawn red: after the shared resize + centre crop, its mask pixels are red.
    prompted = load_prompted_set(eval_sets["sound"])
    for p in prompted.prompts:
        if p.class_name != "ball":
            continue
        mask = label_mask(p, 32)
        image = resize_center_crop(read_image(p.image_path), 32).astype(float)
        inside = image[mask].mean(0)
        assert mask.any()
        assert inside[0] > inside[1] + 60 and inside[0] > inside[2] + 60, inside


def test_oracle_heatmap_scores_near_perfect(eval_sets):
    # A heatmap equal to the (downsampled) true mask must score AP ~ 1: checks the alignment of
    # upsampling, pooling and scoring.
    prompted = load_prompted_set(eval_sets["speech"])
    results = []
    for p in prompted.prompts:
        mask = label_mask(p, 32)
        low = torch.nn.functional.avg_pool2d(torch.from_numpy(mask).float()[None, None], 4)[
            0, 0
        ].numpy()
        results.append(
            PromptResult(prompt=p, combined=low, per_head=np.stack([low, low]), mask=mask)
        )
    scores, _ = score_classes(results)
    assert min(s.ap for s in scores) > 0.9
    assert min(s.iou for s in scores) > 0.5
    assert min(s.pointing for s in scores) == 1.0


def test_retrieval_over_a_prompted_folder(eval_sets, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "retrieval",
                "--model",
                str(model_dir),
                "--data",
                str(eval_sets["speech"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "retrieval.json").read_text())
    assert report["pool"] == CLASSES * PER_CLASS  # fewer clips than the default 1000: said so
    assert "only 6 clips" in capsys.readouterr().out


def test_heatmaps_do_not_depend_on_batch_mates(eval_sets, model_dir):
    # Prompts of different lengths are padded to one 10 s clip, as in training, so a prompt's
    # heatmap is the same alone or batched with others.
    model = DenseAV.from_pretrained(model_dir)
    full = load_prompted_set(eval_sets["speech"])
    prompted = PromptedSet(full.root, full.kind, full.prompts[:3])
    alone = compute_prompt_heatmaps(model, prompted, SegmentationSettings(batch_size=1))
    together = compute_prompt_heatmaps(model, prompted, SegmentationSettings(batch_size=3))
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a.combined, b.combined, rtol=1e-4, atol=1e-5)


def test_predict_pictures_show_the_scored_heatmaps(eval_sets, model_dir):
    # The whole-clip overlay of the inference command is the sound-prompted heatmap the
    # segmentation scores, for the same image and audio.
    model = DenseAV.from_pretrained(model_dir)
    full = load_prompted_set(eval_sets["sound"])
    prompted = PromptedSet(full.root, full.kind, full.prompts[:1])
    scored = compute_prompt_heatmaps(model, prompted, SegmentationSettings())[0]
    p = prompted.prompts[0]
    _, act = predict_image(model, read_image(p.image_path), load_audio(p.audio_path))
    np.testing.assert_allclose(act.maps[0, 0], scored.per_head, rtol=1e-4, atol=1e-5)
