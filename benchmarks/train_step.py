"""Training-step throughput and peak memory of a small config, with and without data loading.

Measures, in one process, on the trainer's own step functions (``trainer.train``):

1. ``step only``: splice + forward + global-batch loss + backward + clip + Adam on one batch held
   in memory (data loading excluded), in phase 1 (aligners only) and phase 2 (all).
2. ``with data``: the same phase-2 steps fed by the real shards loader (decode + augmentation in
   worker processes + collation) over synthetic shards written by the shards writer.

Prints samples/s, seconds per step and the ratio of each mode to the phase-2 step-only baseline,
plus peak memory (CUDA: max allocated; CPU: the process's peak resident set size so far).

    python benchmarks/train_step.py                      # toy preset, batch 16, 96 px
    python benchmarks/train_step.py --preset tiny --batch-size 8 --image-size 32 --steps 5
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from accelerate import Accelerator

from denseav.losses import DenseAVLoss
from denseav.model import DenseAV
from shards.synthetic import write_synthetic_dataset
from trainer.data import build_loader, collate
from trainer.main import build_model_config
from trainer.params import DataConfig, DatasetSpec, TrainConfig
from trainer.splice import DonorClips
from trainer.train import (
    apply_gradients,
    enter_phase,
    forward_backward,
    param_groups,
    step_generators,
)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_steps(accelerator, model, loss_fn, optimizer, cfg, next_batch, phase, steps, warmup):
    """Run ``warmup + steps`` optimizer steps; return (seconds per measured step, data wait/step)."""
    wrapped = enter_phase(accelerator, model, phase)
    wait = 0.0
    start = 0.0
    donors = None  # the first step has no previous batch to splice from, as in training
    for i in range(warmup + steps):
        if i == warmup:
            start, wait = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        batch = next_batch()
        wait += time.perf_counter() - t0
        optimizer.zero_grad(set_to_none=True)
        forward_backward(
            accelerator,
            wrapped,
            model,
            loss_fn,
            batch,
            donors,
            cfg,
            step_generators(cfg.seed, 0, i, 0),
        )
        donors = DonorClips(batch.audio, batch.valid_samples)
        apply_gradients(accelerator, model, optimizer, cfg.optim.clip_grad)
    return (time.perf_counter() - start) / steps, wait / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="toy", choices=["toy", "tiny"], help="model preset")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--steps", type=int, default=10, help="measured steps per mode")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured steps before each mode")
    p.add_argument("--num-workers", type=int, default=2, help="data-loader workers")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    args = p.parse_args(argv)

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    device = accelerator.device
    torch.manual_seed(0)
    model_cfg = build_model_config({"preset": args.preset})
    model = DenseAV(model_cfg).to(device).train()
    loss_fn = DenseAVLoss(model_cfg)
    optimizer = torch.optim.AdamW(param_groups(model, 5e-5), lr=5e-5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        specs = []
        for i, name in enumerate(("audioset", "places")):
            url = f"{tmp}/{name}"
            write_synthetic_dataset(
                url,
                num_shards=4,
                samples_per_shard=max(8, args.batch_size),
                seed=i,
                name=name,
                num_frames=2,
                frame_size=(2 * args.image_size, 2 * args.image_size),
            )
            specs.append(DatasetSpec(url=url, weight=1.0, name=name))
        data_cfg = DataConfig(
            datasets=specs,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            shuffle_buffer=32,
            image_size=args.image_size,
        )
        cfg = TrainConfig(
            model={"preset": args.preset}, data=data_cfg, mixed_precision=args.mixed_precision
        )
        loader = build_loader(data_cfg, seed=0, rank=0, world_size=1)
        stream = iter(loader)
        fixed = collate(next(stream))

        def run(label: str, phase: int, next_batch) -> None:
            per_step, wait = timed_steps(
                accelerator,
                model,
                loss_fn,
                optimizer,
                cfg,
                next_batch,
                phase,
                args.steps,
                args.warmup,
            )
            rows.append((label, args.batch_size / per_step, per_step, wait, peak_memory_mb(device)))

        run("step only, phase 1", 1, lambda: fixed)
        run("step only, phase 2", 2, lambda: fixed)
        run("with data, phase 2", 2, lambda: collate(next(stream)))

    baseline = rows[1][1]
    print(
        f"\nDenseAV training step: preset={args.preset} batch={args.batch_size} "
        f"image={args.image_size}px audio=10 s  device={device} threads={torch.get_num_threads()} "
        f"workers={args.num_workers} precision={args.mixed_precision}"
    )
    print(
        f"{'mode':<22}{'samples/s':>11}{'s/step':>9}{'wait/step':>11}{'vs baseline':>13}"
        f"{'peak MiB':>10}"
    )
    for label, sps, per_step, wait, mem in rows:
        print(
            f"{label:<22}{sps:>11.2f}{per_step:>9.3f}{wait:>11.3f}{sps / baseline:>12.2f}x"
            f"{mem:>10.0f}"
        )
    print("baseline: step only, phase 2 (data loading excluded); peak memory is cumulative on CPU")


if __name__ == "__main__":
    main()
