"""Train DenseAV: ``accelerate launch trainer/main.py --config CONFIG.yaml [--key value ...]``.

Also ``python trainer/main.py ...`` (one process) and ``python -m trainer.main ...``, from any
working directory. ``--help`` lists every option. Wires the parts together: configuration,
Accelerate, model and loss, optimizer and warm-up schedule, data loader, checkpoints (resume
and final export), logging; the loop itself is :func:`trainer.train.train`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python trainer/main.py`, `accelerate launch trainer/main.py`): import the
    # project from its root, whatever the working directory, instead of from trainer/ itself.
    _here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import logging
import tempfile

import torch
from accelerate import Accelerator

from denseav.config import DenseAVConfig
from denseav.losses import DenseAVLoss
from denseav.model import DenseAV
from shards import storage
from trainer.averaging import WeightAverage
from trainer.checkpoint import CheckpointManager
from trainer.data import build_loader
from trainer.logger import TrainLogger, machine_info, setup_python_logging
from trainer.params import ConfigError, TrainConfig, help_text, load_config, to_dict
from trainer.scheduler import phase_scheduler
from trainer.splice import DonorClips
from trainer.train import RunState, param_groups, phase_at, train

log = logging.getLogger("trainer")

USAGE = """usage: accelerate launch trainer/main.py --config CONFIG.yaml [--key value ...]
       python trainer/main.py --config CONFIG.yaml [--key value ...]

Train DenseAV on WebDataset shards (local folders or s3://). Options come from the YAML file and
are overridden by --key value (dotted, e.g. --optim.lr 1e-4, or a unique bare name, e.g. --lr).
--model.KEY sets a DenseAVConfig field (model.preset: paper | toy | tiny).
--checkpoint.resume latest continues from the newest complete checkpoint.

options:
  --config PATH   YAML configuration (configs/*.yaml); without it, the defaults below
  -h, --help      show this help and exit
"""


def parse_args(argv: list[str]) -> TrainConfig:
    config_path = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(USAGE + "\n" + help_text())
            raise SystemExit(0)
        if arg == "--config" and i + 1 < len(argv):
            config_path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            config_path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return load_config(config_path, rest)


def build_model_config(model_cfg: dict) -> DenseAVConfig:
    """``{"preset": "toy", "heads": 1, ...}`` -> ``DenseAVConfig.toy(heads=1, ...)``."""
    settings = dict(model_cfg)
    preset = settings.pop("preset", "paper")
    factory = {"paper": DenseAVConfig.paper, "toy": DenseAVConfig.toy, "tiny": DenseAVConfig.tiny}
    if preset not in factory:
        raise ConfigError(f"model.preset={preset!r}: choose one of {', '.join(factory)}")
    try:
        return factory[preset](**settings)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model: {err}") from None


def export_model(model: DenseAV, target: str) -> None:
    """``save_pretrained`` to a local folder, or through a temporary folder to ``s3://``."""
    if not storage.is_s3(target):
        model.save_pretrained(target)
        return
    with tempfile.TemporaryDirectory(prefix="denseav-export-") as tmp:
        model.save_pretrained(tmp)
        for name in sorted(os.listdir(tmp)):
            storage.upload_file(os.path.join(tmp, name), storage.join(target, name))


def run(cfg: TrainConfig) -> RunState:
    """Train with ``cfg`` in this process (one of ``accelerate launch``'s processes)."""
    os.makedirs(cfg.output_dir, exist_ok=True)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision,
        log_with=cfg.logging.trackers or None,
        project_dir=cfg.output_dir,
    )
    setup_python_logging(accelerator.is_main_process)
    rank, world = accelerator.process_index, accelerator.num_processes
    log.info(
        "process %d of %d (%s, %s)", rank, world, accelerator.distributed_type, accelerator.device
    )

    checkpoints = CheckpointManager(
        cfg.checkpoint.dir, cfg.checkpoint.keep, rank, world, accelerator.wait_for_everyone
    )

    try:
        resume_url = checkpoints.resolve(cfg.checkpoint.resume) if cfg.checkpoint.resume else None
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    if cfg.checkpoint.resume == "latest" and resume_url is None:
        log.info("no complete checkpoint under %s: starting from step 0", cfg.checkpoint.dir)

    model_config = build_model_config(cfg.model)
    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    model = DenseAV(model_config).to(accelerator.device)
    model.train()
    loss_fn = DenseAVLoss(model_config)
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.optim.lr, cfg.optim.weight_decay),
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        eps=cfg.optim.eps,
    )
    scheduler = phase_scheduler(
        optimizer, cfg.optim.warmup_steps, cfg.warmup_aligner_steps, cfg.steps, cfg.optim.decay
    )
    try:
        loader = build_loader(cfg.data, cfg.seed, rank, world)
    except (OSError, ValueError) as err:  # a missing index, an empty or unreadable dataset
        raise ConfigError(f"data.datasets: {err}") from None
    average = (
        WeightAverage(cfg.optim.ema_decay, cfg.optim.ema_start) if cfg.optim.ema_decay else None
    )
    state = RunState(step=0, phase=phase_at(0, cfg.warmup_aligner_steps), average=average)
    if resume_url is not None:
        restored = checkpoints.load(resume_url, model, optimizer, accelerator.scaler)
        scheduler.load_state_dict(restored.scheduler)
        loader.load_state_dict(restored.data_state)
        if restored.averaged_state is not None:
            if average is None:
                log.warning(
                    "%s holds a weight average but optim.ema_decay is 0: continuing without it",
                    resume_url,
                )
            else:
                average.load_state_dict(restored.averaged_state, model)
        elif average is not None and restored.step >= average.start:
            log.warning(
                "%s holds no weight average (written with optim.ema_decay 0?) although "
                "optim.ema_start=%d: the average starts from its weights, at step %d",
                resume_url,
                average.start,
                restored.step,
            )
            average.update(model, restored.step)
        donors = restored.process_state.get("splice_donors")
        state = RunState(
            step=restored.step,
            phase=restored.phase,
            splice_donors=DonorClips.from_state_dict(donors) if donors else None,
            average=average,
        )
        log.info("resumed from %s at step %d (phase %d)", resume_url, state.step, state.phase)
    accelerator.wait_for_everyone()
    checkpoints.remove_torn()

    if cfg.logging.trackers:
        accelerator.init_trackers(cfg.logging.project, config=_flat(to_dict(cfg)))
    logger = TrainLogger(
        accelerator,
        cfg.output_dir,
        cfg.steps,
        state.step,
        cfg.logging.progress,
        cfg.logging.record_samples,
    )
    logger.write_run_info(
        {
            "world_size": world,
            "distributed_type": str(accelerator.distributed_type),
            "device": str(accelerator.device),
            "mixed_precision": cfg.mixed_precision,
            "machine": machine_info(),
            "resumed_from": resume_url,
            "start_step": state.step,
            "config": to_dict(cfg),
            "model_config": model_config.to_dict(),
        }
    )
    state = train(
        cfg, accelerator, model, loss_fn, optimizer, scheduler, loader, checkpoints, logger, state
    )

    export = cfg.checkpoint.export_dir or os.path.join(cfg.output_dir, "final_model")
    averaged = state.average.state_dict(model) if state.average is not None else None
    if averaged is not None:
        model.load_state_dict(averaged)  # training is over: the run's model is the average
    if accelerator.is_main_process:
        export_model(model, export)
        log.info(
            "done at step %d. checkpoints: %s | final model (save_pretrained): %s | logs: %s",
            state.step,
            cfg.checkpoint.dir,
            export,
            cfg.output_dir,
        )
    accelerator.wait_for_everyone()
    logger.close()  # ends the trackers and, under several processes, the process group
    return state


def _flat(tree: dict, prefix: str = "") -> dict:
    """Tracker hyper-parameters must be scalars: flatten and stringify lists."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, f"{key}/"))
        elif isinstance(v, (int, float, str, bool)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def main(argv: list[str] | None = None) -> None:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
        build_model_config(cfg.model)
        run(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
