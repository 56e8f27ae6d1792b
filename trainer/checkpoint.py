"""Atomic, resumable training checkpoints on a local folder or ``s3://bucket/prefix``.

Layout of one checkpoint, ``{root}/step-{step:09d}/``:

- ``model.safetensors``: the full model state (written by the main process); with a weight
  average (``optim.ema_decay``) once it has started, the averaged state, the model the run
  exports.
- ``training_weights.safetensors``: with a weight average, the weights being trained.
- ``config.json``: the model's configuration as ``DenseAV.save_pretrained`` writes it, so the
  folder of a local checkpoint is also a model folder: ``DenseAV.from_pretrained`` and the
  evaluation commands' ``--model`` load it (a training curve can be measured checkpoint by
  checkpoint).
- ``optimizer.pt``, ``scaler.pt``: optimizer and gradient-scaler states (main process; DDP keeps
  them identical on every process). Loaded with ``torch.load(weights_only=True)``.
- ``rank-{r}.pt``: per process: RNG states (python, numpy, torch, CUDA) and the data readers'
  positions.
- ``trainer_state.json``: step, phase, scheduler state, world size and the trainer's extras
  (the seed).
- ``COMPLETE``: written last, after every process has published its files. A checkpoint
  without it is torn (a crash during saving) and is never resumed from; it is deleted.

Every object goes through :mod:`shards.storage`, which publishes each file atomically.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file as save_safetensors_file

from denseav.model import CONFIG_NAME, WEIGHTS_NAME
from shards import storage

COMPLETE = "COMPLETE"
TRAINING_WEIGHTS_NAME = "training_weights.safetensors"
_STEP_DIR = re.compile(r"^step-(\d{9})/?$")


def step_dir_name(step: int) -> str:
    return f"step-{step:09d}"


# ------------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """This process's random generators, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------- serialisation


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_from_bytes(data: bytes, url: str) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise RuntimeError(f"checkpoint file {url} cannot be loaded: {err}") from err


def _publish_safetensors(tensors: dict[str, torch.Tensor], url: str) -> None:
    """Write ``tensors`` to ``url`` through a local temporary file (multipart upload on S3)."""
    with tempfile.TemporaryDirectory(prefix="denseav-ckpt-") as tmp:
        path = os.path.join(tmp, "model.safetensors")
        save_safetensors_file(tensors, path, metadata={"format": "pt"})
        storage.upload_file(path, url)


def cpu_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model state as independent, contiguous CPU tensors (shared weights are copied)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


# ------------------------------------------------------------------------------- manager


@dataclass
class LoadedCheckpoint:
    """What :meth:`CheckpointManager.load` restored besides module states."""

    url: str
    step: int
    phase: int
    scheduler: dict
    data_state: Any
    trainer_state: dict
    process_state: dict
    averaged_state: dict[str, torch.Tensor] | None = None


class CheckpointManager:
    """Save, find, load and prune checkpoints under ``root`` (local folder or ``s3://``).

    Args:
        root: checkpoint folder or URL.
        keep: number of most recent complete checkpoints kept.
        rank, world_size: this process's place in the job.
        barrier: a function that blocks until every process reaches it.
    """

    def __init__(
        self, root: str, keep: int, rank: int, world_size: int, barrier: Callable[[], None]
    ) -> None:
        self.root = root.rstrip("/")
        self.keep = keep
        self.rank = rank
        self.world_size = world_size
        self.barrier = barrier

    # ------------------------------------------------------------------ discovery
    def _steps(self) -> tuple[list[int], list[int]]:
        """(complete steps, torn steps) present under the root, ascending."""
        complete, torn = [], []
        for name in storage.listdir(self.root):
            match = _STEP_DIR.match(name)
            if not match:
                continue
            step = int(match.group(1))
            done = storage.exists(storage.join(self.root, step_dir_name(step), COMPLETE))
            (complete if done else torn).append(step)
        return sorted(complete), sorted(torn)

    def latest(self) -> str | None:
        """URL of the newest complete checkpoint, or None."""
        complete, _ = self._steps()
        return storage.join(self.root, step_dir_name(complete[-1])) if complete else None

    def resolve(self, resume: str) -> str | None:
        """``'latest'`` -> newest complete checkpoint (None if there is none); a URL -> itself.

        A given URL must hold a complete checkpoint, else the error says what is missing.
        """
        if resume == "latest":
            return self.latest()
        url = resume.rstrip("/")
        if not storage.exists(storage.join(url, COMPLETE)):
            raise FileNotFoundError(
                f"checkpoint.resume={resume!r}: no complete checkpoint there "
                f"({COMPLETE} marker missing: torn or not a checkpoint folder)"
            )
        return url

    def remove_torn(self) -> None:
        """Delete checkpoints that lack their COMPLETE marker (main process only)."""
        if self.rank != 0:
            return
        _, torn = self._steps()
        for step in torn:
            storage.delete(storage.join(self.root, step_dir_name(step)), recursive=True)

    # ------------------------------------------------------------------ save
    def save(
        self,
        step: int,
        phase: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: Any,
        data_state: Any,
        extra: dict,
        process_state: dict | None = None,
        model_config_json: str | None = None,
        averaged_state: dict[str, torch.Tensor] | None = None,
    ) -> str:
        """Write the checkpoint of ``step`` collectively (every process calls this). Returns its URL.

        ``data_state`` (the reader's position) and ``process_state`` (anything else this process
        needs to continue exactly) are saved per process; ``extra`` once, in the trainer state;
        ``model_config_json`` (``DenseAV.config_json()``) as ``config.json`` beside the weights.
        ``averaged_state`` (``WeightAverage.state_dict``), when given, becomes the folder's model
        and the model's own weights go to ``training_weights.safetensors``.
        """
        url = storage.join(self.root, step_dir_name(step))
        if self.rank == 0:
            storage.delete(url, recursive=True)  # a torn attempt at the same step
        self.barrier()
        rank_state = {
            "rng": rng_state(),
            "data": data_state,
            "process": process_state or {},
            "step": step,
        }
        storage.write_bytes(storage.join(url, f"rank-{self.rank}.pt"), _torch_bytes(rank_state))
        if self.rank == 0:
            weights = (
                {WEIGHTS_NAME: model.state_dict()}
                if averaged_state is None
                else {WEIGHTS_NAME: averaged_state, TRAINING_WEIGHTS_NAME: model.state_dict()}
            )
            for name, tensors in weights.items():
                _publish_safetensors(cpu_tensors(tensors), storage.join(url, name))
            if model_config_json is not None:
                storage.write_bytes(storage.join(url, CONFIG_NAME), model_config_json.encode())
            storage.write_bytes(
                storage.join(url, "optimizer.pt"), _torch_bytes(optimizer.state_dict())
            )
            if scaler is not None:
                storage.write_bytes(
                    storage.join(url, "scaler.pt"), _torch_bytes(scaler.state_dict())
                )
            state = {
                "step": step,
                "phase": phase,
                "world_size": self.world_size,
                "scheduler": scheduler.state_dict(),
                **extra,
            }
            storage.write_bytes(
                storage.join(url, "trainer_state.json"), json.dumps(state, indent=1).encode()
            )
        self.barrier()
        if self.rank == 0:
            storage.write_bytes(storage.join(url, COMPLETE), json.dumps({"step": step}).encode())
            self._prune()
        self.barrier()
        return url

    def _prune(self) -> None:
        complete, torn = self._steps()
        for step in complete[: -self.keep] + [s for s in torn if s < complete[-1]]:
            storage.delete(storage.join(self.root, step_dir_name(step)), recursive=True)

    # ------------------------------------------------------------------ load
    def load(
        self,
        url: str,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any,
    ) -> LoadedCheckpoint:
        """Restore module, optimizer, scaler and this process's RNG states from ``url``; the
        weight average, if the checkpoint has one, is returned as ``averaged_state``."""
        state = json.loads(storage.read_bytes(storage.join(url, "trainer_state.json")))
        if state["world_size"] != self.world_size:
            raise RuntimeError(
                f"checkpoint {url} was written by {state['world_size']} processes but this run has "
                f"{self.world_size}: the data readers' positions are per process, so resume with "
                f"the same number of processes"
            )
        averaged_state = None
        model_url = storage.join(url, TRAINING_WEIGHTS_NAME)
        if storage.exists(model_url):
            averaged_state = self._model_state(storage.join(url, WEIGHTS_NAME), model)
        else:
            model_url = storage.join(url, WEIGHTS_NAME)
        model.load_state_dict(self._model_state(model_url, model))
        opt_url = storage.join(url, "optimizer.pt")
        try:
            optimizer.load_state_dict(_torch_from_bytes(storage.read_bytes(opt_url), opt_url))
        except ValueError as err:  # torch: "... different number of parameter groups" and kin
            raise RuntimeError(
                f"checkpoint {url}: its optimizer state does not fit this run's parameter groups"
                f" ({err}); it was written for another model or optimizer configuration"
            ) from None
        if scaler is not None:
            scaler_url = storage.join(url, "scaler.pt")
            scaler.load_state_dict(_torch_from_bytes(storage.read_bytes(scaler_url), scaler_url))
        rank_url = storage.join(url, f"rank-{self.rank}.pt")
        rank_state = _torch_from_bytes(storage.read_bytes(rank_url), rank_url)
        set_rng_state(rank_state["rng"])
        return LoadedCheckpoint(
            url=url,
            step=state["step"],
            phase=state["phase"],
            scheduler=state["scheduler"],
            data_state=rank_state["data"],
            trainer_state=state,
            process_state=rank_state.get("process", {}),
            averaged_state=averaged_state,
        )

    @staticmethod
    def _model_state(url: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The state in the safetensors file ``url``, checked against ``model``'s entries."""
        tensors = load_safetensors(storage.read_bytes(url))
        expected = model.state_dict().keys()
        missing = [k for k in expected if k not in tensors]
        unexpected = [k for k in tensors if k not in expected]
        if missing or unexpected:
            raise RuntimeError(
                f"{url} does not match the model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]} (was the model configuration changed?)"
            )
        return tensors
