"""The Table 4 ablation: one trainer subprocess per aggregation, one table."""

import json
import sys
from pathlib import Path

import pytest

from evaluation.__main__ import main
from evaluation.ablation import AblationPlan, ablation_markdown, train_command


def _plan(tmp_path: Path, **changes) -> AblationPlan:
    config = tmp_path / "train.yaml"
    config.write_text("model:\n  preset: tiny\n")
    return AblationPlan(config=str(config), out=tmp_path / "abl", speech_data="speech", **changes)


def test_train_command_is_an_argument_list_with_one_difference(tmp_path):
    plan = _plan(tmp_path, train_overrides=["--steps", "7"])
    multi, avg = train_command(plan, "multihead"), train_command(plan, "avgpool")
    assert multi[:3] == [sys.executable, "-m", "trainer.main"]
    assert multi[multi.index("--model.aggregation") + 1] == "multihead"
    assert multi[multi.index("--steps") + 1] == "7"
    # Only the aggregation and the run folders differ between runs.
    differ = [(a, b) for a, b in zip(multi, avg) if a != b]
    assert differ[0] == ("multihead", "avgpool")
    assert all("multihead" in a for a, _ in differ[1:])
    # The single-head max-space variant sets one head; the run folders come last.
    maxspace = train_command(plan, "maxspace")
    assert maxspace[maxspace.index("--model.heads") + 1] == "1"
    assert maxspace[-2:] == ["--checkpoint.resume", "latest"]
    assert str(plan.out / "maxspace" / "model") in maxspace


def test_plan_rejects_unknown_aggregation_and_missing_config(tmp_path):
    with pytest.raises(ValueError, match="unknown aggregation"):
        _plan(tmp_path, aggregations=["multihead", "simpool"])
    with pytest.raises(ValueError, match="not found"):
        AblationPlan(config=str(tmp_path / "nope.yaml"), out=tmp_path, speech_data="s")


def test_table_has_one_row_per_aggregation(tmp_path):
    plan = _plan(tmp_path, retrieval_data="shards")
    rows = [
        {"aggregation": "multihead", "speech_mAP": 0.482, "speech_mIoU": 0.3, "retrieval_pool": 1000,
         "v2a_R@10": 0.935, "a2v_R@10": 0.938},
        {"aggregation": "avgpool", "speech_mAP": 0.201, "speech_mIoU": 0.1, "retrieval_pool": 1000,
         "v2a_R@10": 0.92, "a2v_R@10": 0.912},
    ]  # fmt: skip
    md = ablation_markdown(plan, rows)
    assert "| Multi-Head (ours) | 48.2% | 30.0% | 93.5% | 93.8% |" in md
    assert "| Average Pool | 20.1% | 10.0% | 92.0% | 91.2% |" in md
    assert "1000-way retrieval" in md


def test_extra_arguments_only_reach_the_ablation():
    with pytest.raises(SystemExit):
        main(["retrieval", "--model", "m", "--data", "d", "--steps", "3"])


@pytest.mark.slow
def test_ablation_trains_and_evaluates_each_aggregation(tmp_path):
    from ingest.toyworld.config import preset
    from ingest.toyworld.evalsets import make_prompt, write_csv
    from shards.synthetic import write_synthetic_dataset

    for name in ("audioset", "placesaudio"):
        write_synthetic_dataset(str(tmp_path / name), 2, 6, frame_size=(32, 32), name=name)
    cfg = preset("tiny", num_classes=3, image_size=32)
    speech = tmp_path / "speech"
    write_csv(speech, "speech", [make_prompt(cfg, speech, "speech", i) for i in range(6)])
    config = tmp_path / "train.yaml"
    config.write_text(
        "model: {preset: tiny}\n"
        f"data: {{datasets: [{{url: {tmp_path / 'audioset'}}}, {{url: {tmp_path / 'placesaudio'}}}],"
        " batch_size: 4, num_workers: 0, image_size: 32}\n"
        "warmup_aligner_steps: 1\noptim: {warmup_steps: 1}\ncheckpoint: {every: 0}\n"
        "logging: {trackers: [], progress: false}\n"
    )
    out = tmp_path / "out"
    args = ["ablation", "--config", str(config), "--speech-data", str(speech), "--retrieval-data",
            str(tmp_path / "placesaudio"), "--aggregations", "multihead,cls", "--out", str(out),
            "--steps", "2"]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert [r["aggregation"] for r in report["rows"]] == ["multihead", "cls"]
    assert report["train_overrides"] == ["--steps", "2"]
    for row in report["rows"]:
        assert 0 <= row["speech_mAP"] <= 1 and row["retrieval_pool"] == 12
        run = json.loads((out / row["aggregation"] / "model" / "config.json").read_text())
        assert run["aggregation"] == row["aggregation"]
    table = (out / "ablation.md").read_text()
    assert "Multi-Head (ours)" in table and "CLS Token" in table
    # A second run reuses the trained models.
    before = (out / "cls" / "model" / "model.safetensors").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "cls" / "model" / "model.safetensors").stat().st_mtime_ns == before
