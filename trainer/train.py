"""The training loop: phases, micro-batches, global-batch loss, clipping, logging, checkpoints.

One optimizer step::

    for each micro-batch (optim.grad_accum of them):
        batch <- loader                         (time spent waiting is logged as data_wait)
        splice negative audio                   (generator seeded by seed, rank, step, micro)
        features <- DDP(model)(images, audio)   (autocast under mixed precision)
        gather features from every process      (gradients flow back to each local slice)
        loss <- DenseAVLoss(local, global)      (InfoNCE over the global batch; regularisers
                                                 on the local pairs)
        backward                                (DDP averages gradients over processes)
    unscale (fp16), per-tensor clip, AdamW step, warm-up scheduler step

Every random draw in a step is seeded from (seed, rank, step), and the data loader resumes at
its exact position, so a run resumed from a checkpoint repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from torch import nn

from denseav.losses import DenseAVLoss
from denseav.model import AudioFeatures, DenseAV, DenseAVOutput, ImageFeatures
from shards.format import SAMPLE_RATE
from shards.loader import ShardLoader
from shards.reader import derive_seed
from trainer.averaging import WeightAverage
from trainer.checkpoint import CheckpointManager
from trainer.data import TrainBatch, collate
from trainer.distributed import gather_no_grad, gather_with_grad, is_distributed, local_offset
from trainer.logger import TrainLogger
from trainer.params import TrainConfig
from trainer.scheduler import linear_ramp
from trainer.splice import DonorClips, SplicedAudio, apply_splices, splice_negatives

log = logging.getLogger("trainer")

# Streams of derive_seed(seed, stream, rank, step, ...): independent per purpose.
_STREAM_MODEL = 1
_STREAM_SPLICE = 2
_STREAM_LOSS = 3


class ForwardModule(nn.Module):
    """The module DDP wraps: a fresh shell per phase around the same :class:`DenseAV`.

    DDP registers the parameters that require gradients when it is built, so entering phase 2
    (backbones start training) needs a new wrapper; the shell keeps the model itself untouched.
    """

    def __init__(self, model: DenseAV) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor, waveform: torch.Tensor, sample_mask: torch.Tensor
    ) -> DenseAVOutput:
        return self.model(images, waveform, sample_mask)


def phase_at(step: int, warmup_aligner_steps: int) -> int:
    """Phase of the optimizer step ``step`` (0-based): 1 during the aligner warm-up, then 2."""
    return 1 if step < warmup_aligner_steps else 2


def enter_phase(accelerator: Accelerator, model: DenseAV, phase: int) -> nn.Module:
    """Set what trains and (re)build the distributed wrapper; returns the module to call."""
    model.set_phase(phase)
    accelerator.free_memory()  # drop the previous phase's DDP wrapper (we prepare only the model)
    return accelerator.prepare_model(ForwardModule(model))


def param_groups(model: DenseAV, lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Named AdamW groups: aligners + temperature, image backbone, audio backbone (logged separately).

    Each set is split in two: weight matrices and convolution kernels decay by ``weight_decay``;
    tensors of fewer than two dimensions (the inverse temperature, biases, normalisation gains)
    never do, as shrinking them rescales the similarities instead of regularising the features.
    Every parameter that trains in some phase is included (of the image backbone: its LoRA
    adapters, or all of it with ``image_finetuning="full"``). AdamW skips those whose gradient is
    None, so frozen parameters are neither changed nor given optimizer state.
    """
    sets = {
        "aligners": [
            model.inverse_temperature,
            *model.image_aligner.parameters(),
            *model.audio_aligner.parameters(),
        ],
        "image_backbone": list(model.finetuned_image_parameters()),
        "audio_backbone": list(model.audio_backbone.parameters()),
    }
    groups = []
    for name, params in sets.items():
        decayed = [p for p in params if p.ndim >= 2]
        kept = [p for p in params if p.ndim < 2]
        for members, decay in ((decayed, weight_decay), (kept, 0.0)):
            if members:
                groups.append({"name": name, "params": members, "lr": lr, "weight_decay": decay})
    return groups


def clip_per_tensor(parameters: list[nn.Parameter], max_norm: float) -> tuple[float, int]:
    """Scale each gradient tensor to norm <= ``max_norm`` on its own. Returns (largest norm, #clipped)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0, 0
    norms = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
    if max_norm > 0:
        scales = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g, s in zip(grads, scales):
            g.mul_(s.to(g.dtype))
        clipped = int((norms > max_norm).sum())
    else:
        clipped = 0
    return float(norms.max()), clipped


def splice_batch(
    batch: TrainBatch, donors: DonorClips | None, cfg: TrainConfig, generator: torch.Generator
) -> SplicedAudio:
    """Negative audio pieces for the batch, cut from ``donors`` (only the padding masks when
    splicing is off or there are no donors yet: the first micro-batch of a run)."""
    if cfg.data.splice and donors is not None:
        return splice_negatives(
            batch.audio,
            batch.valid_samples,
            donors,
            generator,
            SAMPLE_RATE,
            cfg.data.splice_min_seconds,
            cfg.data.splice_max_seconds,
            cfg.data.splice_max_fraction,
            cfg.data.splice_probability,
        )
    return apply_splices(batch.audio, batch.valid_samples, [None] * len(batch), None, SAMPLE_RATE)


def _float(features: AudioFeatures | ImageFeatures) -> AudioFeatures | ImageFeatures:
    if isinstance(features, AudioFeatures):
        return AudioFeatures(features.features.float(), features.mask.float(), features.cls.float())
    return ImageFeatures(features.features.float(), features.cls.float())


def global_batch_loss(
    loss_fn: DenseAVLoss,
    out: DenseAVOutput,
    splice_tokens: torch.Tensor,
    generator: torch.Generator,
    dis_weight: float | None = None,
) -> dict[str, torch.Tensor]:
    """DenseAVLoss with negatives from every process (in float32).

    Args:
        out: this process's features. splice_tokens: ``(B, T)`` soft splice mask at token rate.
        dis_weight: this step's disentanglement weight (None: the model config's).
    """
    audio, image = _float(out.audio), _float(out.image)
    gamma = out.inverse_temperature.float()
    if not is_distributed():
        return loss_fn(
            audio, image, gamma, splice_tokens, generator=generator, dis_weight=dis_weight
        )
    all_audio = AudioFeatures(
        gather_with_grad(audio.features),
        gather_no_grad(loss_fn.contrast_mask(audio.mask, splice_tokens)),
        gather_with_grad(audio.cls),
    )
    all_image = ImageFeatures(gather_with_grad(image.features), gather_with_grad(image.cls))
    offset = local_offset(audio.features.shape[0], audio.features.device)
    return loss_fn(
        audio,
        image,
        gamma,
        splice_tokens,
        all_audio=all_audio,
        all_image=all_image,
        offset=offset,
        generator=generator,
        dis_weight=dis_weight,
    )


def step_generators(
    seed: int, rank: int, step: int, micro: int
) -> tuple[torch.Generator, torch.Generator]:
    """The splice and loss generators of one micro-batch (a pure function of its place in the run)."""
    return tuple(  # type: ignore[return-value]
        torch.Generator().manual_seed(derive_seed(seed, stream, rank, step, micro) % (1 << 63))
        for stream in (_STREAM_SPLICE, _STREAM_LOSS)
    )


def forward_backward(
    accelerator: Accelerator,
    wrapped: nn.Module,
    model: DenseAV,
    loss_fn: DenseAVLoss,
    batch: TrainBatch,
    donors: DonorClips | None,
    cfg: TrainConfig,
    generators: tuple[torch.Generator, torch.Generator],
    sync: bool = True,
    dis_weight: float | None = None,
) -> dict[str, torch.Tensor]:
    """Splice (pieces of ``donors``), encode, global-batch loss and backward for one micro-batch;
    returns the loss terms.

    ``sync=False`` skips DDP's gradient all-reduce (all but the last micro-batch of a step).
    The loss is divided by ``optim.grad_accum`` before backward. ``dis_weight``: this step's
    disentanglement weight (None: the model config's).
    """
    g_splice, g_loss = generators
    device = accelerator.device
    spliced = splice_batch(batch, donors, cfg, g_splice)
    context = contextlib.nullcontext() if sync else accelerator.no_sync(wrapped)
    with context:
        out = wrapped(
            batch.images.to(device), spliced.audio.to(device), spliced.sample_mask.to(device)
        )
        splice_tokens = model.token_mask(spliced.splice_mask.to(device))
        terms = global_batch_loss(loss_fn, out, splice_tokens, g_loss, dis_weight)
        accelerator.backward(terms["loss"] / cfg.optim.grad_accum)
    return {name: value.detach().float() for name, value in terms.items()}


def apply_gradients(
    accelerator: Accelerator, model: DenseAV, optimizer: torch.optim.Optimizer, max_norm: float
) -> tuple[float, int]:
    """Unscale (fp16), clip each gradient tensor, AdamW step. Returns (largest norm, #clipped)."""
    scaler = accelerator.scaler
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_max, clipped = clip_per_tensor(
        [p for p in model.parameters() if p.requires_grad], max_norm
    )
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return grad_max, clipped


def dis_weight_at(cfg: TrainConfig, step: int, model_weight: float) -> float:
    """The disentanglement weight of optimizer step ``step``: ``model_weight`` (the model config's
    ``dis_weight``), or with ``optim.dis_weight_start`` set a linear fall from that start to
    ``model_weight`` over ``optim.dis_weight_steps``. A function of the step, so a resumed run
    weights every step as the run that did not stop."""
    o = cfg.optim
    if o.dis_weight_start is None:
        return model_weight
    return linear_ramp(step, o.dis_weight_start, model_weight, o.dis_weight_steps)


@dataclass
class RunState:
    """Where the run is: optimizer steps done, the current phase, this process's previous
    micro-batch (the clips the next one splices its negative pieces from) and the weight average
    (None when ``optim.ema_decay`` is 0)."""

    step: int
    phase: int
    splice_donors: DonorClips | None = None
    average: WeightAverage | None = None


def train(
    cfg: TrainConfig,
    accelerator: Accelerator,
    model: DenseAV,
    loss_fn: DenseAVLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: ShardLoader,
    checkpoints: CheckpointManager,
    logger: TrainLogger,
    state: RunState,
) -> RunState:
    """Run optimizer steps ``state.step .. cfg.steps - 1``; checkpoint every N and at the end."""
    rank = accelerator.process_index
    device = accelerator.device
    world = accelerator.num_processes
    accum = cfg.optim.grad_accum
    samples_per_step = cfg.data.batch_size * world * accum
    wrapped = enter_phase(accelerator, model, state.phase)
    batches: Iterator[list[dict]] = iter(loader)
    window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0
    while state.step < cfg.steps:
        phase = phase_at(state.step, cfg.warmup_aligner_steps)
        if phase != state.phase:
            log.info(
                "step %d: phase %d -> %d (backbones start training)", state.step, state.phase, phase
            )
            state.phase = phase
            wrapped = enter_phase(accelerator, model, phase)
        torch.manual_seed(derive_seed(cfg.seed, _STREAM_MODEL, rank, state.step) % (1 << 63))
        optimizer.zero_grad(set_to_none=True)
        dis_weight = dis_weight_at(cfg, state.step, loss_fn.config.dis_weight)
        totals: dict[str, torch.Tensor] = {}
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = collate(next(batches))
            window_wait += time.perf_counter() - t0
            logger.record_samples(state.step, batch.keys, batch.sources)
            terms = forward_backward(
                accelerator,
                wrapped,
                model,
                loss_fn,
                batch,
                state.splice_donors,
                cfg,
                step_generators(cfg.seed, rank, state.step, micro),
                sync=micro == accum - 1,
                dis_weight=dis_weight,
            )
            state.splice_donors = DonorClips(batch.audio, batch.valid_samples)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value / accum
        grad_max, clipped = apply_gradients(accelerator, model, optimizer, cfg.optim.clip_grad)
        # The rates used this step (a set's decayed and undecayed groups share one).
        lrs = {f"lr/{g['name']}": float(g["lr"]) for g in optimizer.param_groups}
        scheduler.step()
        state.step += 1
        if state.average is not None:
            state.average.update(model, state.step)
        window_steps += 1
        logger.advance()

        if state.step % cfg.logging.every == 0 or state.step == cfg.steps:
            elapsed = time.perf_counter() - window_start
            names = sorted(totals)
            local = torch.stack(
                [totals[n] for n in names]
                + [torch.tensor(window_wait / window_steps, device=device)]
            )
            mean = accelerator.reduce(local.to(device), reduction="mean")
            scalars = {
                f"loss/{n}" if n != "loss" else "loss": float(v) for n, v in zip(names, mean[:-1])
            }
            scalars.update(
                {
                    "inverse_temperature": float(model.clamped_inverse_temperature().detach()),
                    "phase": float(state.phase),
                    "dis_weight": dis_weight,
                    "samples_per_s": samples_per_step * window_steps / max(elapsed, 1e-9),
                    "data_wait_s": float(mean[-1]),
                    "grad_norm_max": grad_max,
                    "grad_tensors_clipped": float(clipped),
                }
            )
            scalars.update(lrs)
            for source, errors in loader.stats.items():
                scalars[f"data/{source}/skipped_samples"] = float(errors["sample_errors"])
                scalars[f"data/{source}/skipped_shards"] = float(errors["shard_errors"])
            logger.log(state.step, scalars)
            window_start, window_steps, window_wait = time.perf_counter(), 0, 0.0

        every = cfg.checkpoint.every
        if (every > 0 and state.step % every == 0) or state.step == cfg.steps:
            url = checkpoints.save(
                state.step,
                state.phase,
                model,
                optimizer,
                scheduler,
                accelerator.scaler,
                loader.state_dict(),
                {"seed": cfg.seed},
                {"splice_donors": state.splice_donors and state.splice_donors.state_dict()},
                model.config_json(),
                state.average.state_dict(model) if state.average is not None else None,
            )
            log.info("step %d: checkpoint written to %s", state.step, url)
    return state
