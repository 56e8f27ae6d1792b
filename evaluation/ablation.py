"""Paper Table 4 as one command: the same training budget for each similarity aggregation, every
model evaluated on the same sets, the results in one table.

Each aggregation trains in its own subprocess (``python -m trainer.main``, an argument list, no
shell) from the same YAML config and overrides, with only ``model.aggregation`` changed (and one
head for the single-head max-space variant). Runs go to ``OUT/<aggregation>/`` and resume from
their latest checkpoint; an aggregation whose exported model already exists is not retrained.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from denseav.config import AGGREGATIONS
from evaluation import commands
from evaluation.report import markdown_table, percent, write_report
from evaluation.segmentation import SegmentationSettings

LABELS = {
    "multihead": "Multi-Head (ours)",
    "avgpool": "Average Pool",
    "cls": "CLS Token",
    "maxspace": "Max over space, single head",
}
# Settings that belong to an aggregation's definition, applied before the user's overrides.
AGGREGATION_OVERRIDES: dict[str, list[str]] = {"maxspace": ["--model.heads", "1"]}


@dataclass
class AblationPlan:
    """What to train and how to evaluate it.

    Attributes:
        config: the trainer's YAML config (the shared budget: steps, data, batch size, ...).
        out: output root; ``out/<aggregation>/{train,checkpoints,model,eval}``.
        speech_data: speech-prompted segmentation folder (Table 4's "Speech mAP").
        sound_data: optional sound-prompted segmentation folder.
        retrieval_data: optional retrieval clips (shards dataset or prompted folder; Table 4's
            "Places Acc. @10").
        aggregations: which aggregations to train, in table order.
        train_overrides: ``--key value`` arguments for the trainer, the same for every run.
    """

    config: str
    out: Path
    speech_data: str
    sound_data: str | None = None
    retrieval_data: str | None = None
    pool: int = 1000
    aggregations: Sequence[str] = AGGREGATIONS
    train_overrides: Sequence[str] = field(default_factory=list)
    batch_size: int = 16
    device: str | None = None

    def __post_init__(self) -> None:
        unknown = [a for a in self.aggregations if a not in AGGREGATIONS]
        if unknown:
            raise ValueError(f"unknown aggregation(s) {unknown}; choose from {AGGREGATIONS}")
        if not Path(self.config).is_file():
            raise ValueError(f"trainer config {self.config} not found")


def train_command(plan: AblationPlan, aggregation: str) -> list[str]:
    """The trainer's argument list for one aggregation (run without a shell)."""
    run = plan.out / aggregation
    return [
        sys.executable, "-m", "trainer.main",
        "--config", str(plan.config),
        "--model.aggregation", aggregation,
        *AGGREGATION_OVERRIDES.get(aggregation, []),
        *plan.train_overrides,
        "--output_dir", str(run / "train"),
        "--checkpoint.dir", str(run / "checkpoints"),
        "--checkpoint.export_dir", str(run / "model"),
        "--checkpoint.resume", "latest",
    ]  # fmt: skip


def _trained(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()


def train(plan: AblationPlan, aggregation: str) -> Path:
    """Train one aggregation (unless its model exists); returns the exported model folder."""
    model_dir = plan.out / aggregation / "model"
    if _trained(model_dir):
        print(f"[{aggregation}] model exists at {model_dir}; not retraining (delete it to retrain)")
        return model_dir
    cmd = train_command(plan, aggregation)
    print(f"[{aggregation}] training: {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0 or not _trained(model_dir):
        raise RuntimeError(
            f"[{aggregation}] training failed (exit code {done.returncode}); its logs are in "
            f"{plan.out / aggregation / 'train'}"
        )
    return model_dir


def evaluate(plan: AblationPlan, aggregation: str, model_dir: Path) -> dict[str, Any]:
    """The table row of one trained model."""
    out = plan.out / aggregation / "eval"
    settings = SegmentationSettings(batch_size=plan.batch_size)
    row: dict[str, Any] = {"aggregation": aggregation, "model": str(model_dir)}
    speech, _ = commands.segmentation(
        model_dir, plan.speech_data, out, "speech", settings, plan.device
    )
    row["speech_mAP"], row["speech_mIoU"] = speech["summary"]["mAP"], speech["summary"]["mIoU"]
    if plan.sound_data:
        sound, _ = commands.segmentation(
            model_dir, plan.sound_data, out, "sound", settings, plan.device
        )
        row["sound_mAP"], row["sound_mIoU"] = sound["summary"]["mAP"], sound["summary"]["mIoU"]
    if plan.retrieval_data:
        ret, _ = commands.retrieval(
            model_dir, plan.retrieval_data, out, plan.pool, plan.batch_size, plan.device
        )
        row["retrieval_pool"] = ret["pool"]
        row.update(ret["recall"])
    return row


def ablation_markdown(plan: AblationPlan, rows: Sequence[dict[str, Any]]) -> str:
    """Table 4: one row per aggregation."""
    columns = [("speech_mAP", "Speech mAP"), ("speech_mIoU", "Speech mIoU")]
    if plan.sound_data:
        columns += [("sound_mAP", "Sound mAP"), ("sound_mIoU", "Sound mIoU")]
    if plan.retrieval_data:
        columns += [("v2a_R@10", "V->A R@10"), ("a2v_R@10", "A->V R@10")]
    table = [[LABELS[r["aggregation"]], *(percent(r[key]) for key, _ in columns)] for r in rows]
    pool = f", {rows[0]['retrieval_pool']}-way retrieval" if plan.retrieval_data and rows else ""
    return "\n".join(
        [
            "# Aggregation ablation (paper Table 4)",
            "",
            f"- the same training budget for every row: `{plan.config}`"
            + (f" with `{' '.join(plan.train_overrides)}`" if plan.train_overrides else ""),
            f"- evaluated on `{plan.speech_data}`"
            + (f", `{plan.sound_data}`" if plan.sound_data else "")
            + (f", `{plan.retrieval_data}`{pool}" if plan.retrieval_data else ""),
            "",
            markdown_table(["aggregation", *(name for _, name in columns)], table),
        ]
    )


def run_ablation(plan: AblationPlan) -> tuple[list[dict[str, Any]], tuple[Path, Path]]:
    """Train and evaluate every aggregation; write ``ablation.{json,md}`` to ``plan.out``."""
    rows = []
    for aggregation in plan.aggregations:
        model_dir = train(plan, aggregation)
        rows.append(evaluate(plan, aggregation, model_dir))
        # Rewritten after every model, so a long ablation shows its partial table.
        report = {
            "config": str(plan.config),
            "train_overrides": list(plan.train_overrides),
            "rows": rows,
        }
        paths = write_report(plan.out, "ablation", report, ablation_markdown(plan, rows))
    return rows, paths
