"""Training logs: Accelerate trackers (TensorBoard by default), a JSON-lines copy, a progress bar.

The main process sends every scalar to the configured Accelerate trackers and appends it to
``{output_dir}/metrics.jsonl`` (one object per logged step: easy to compare between runs, e.g.
a resumed run against an uninterrupted one). With ``logging.record_samples`` every process also
writes the keys it trained on at each step to ``{output_dir}/samples-rank{r}.jsonl``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

log = logging.getLogger("trainer")


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """What a run's numbers depend on besides its config and seed.

    Training is deterministic for a config and seed on one machine, but the kernels torch picks
    follow the CPU's instruction set (``torch_cpu_capability``: e.g. AVX2 or AVX512): on another
    CPU the same run takes another float path and ends like another training seed would.
    """
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def setup_python_logging(is_main: bool) -> None:
    """INFO messages from the main process, warnings and errors from every process."""
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


class TrainLogger:
    """Scalars to trackers and ``metrics.jsonl``, sample keys per rank, and a tqdm bar."""

    def __init__(
        self,
        accelerator: Accelerator,
        output_dir: str,
        total_steps: int,
        start_step: int,
        progress: bool,
        record_samples: bool,
    ) -> None:
        self.accelerator = accelerator
        self.is_main = accelerator.is_main_process
        self.metrics_path = os.path.join(output_dir, "metrics.jsonl")
        self.samples_path = (
            os.path.join(output_dir, f"samples-rank{accelerator.process_index}.jsonl")
            if record_samples
            else None
        )
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            disable=not (self.is_main and progress),
        )

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record ``scalars`` for the optimizer step ``step`` (main process only writes)."""
        if not self.is_main:
            return
        self.accelerator.log(scalars, step=step)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        shown = {k: scalars[k] for k in ("loss", "samples_per_s") if k in scalars}
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)

    def record_samples(self, step: int, keys: list[str], sources: list[str]) -> None:
        if self.samples_path is None:
            return
        with open(self.samples_path, "a") as f:
            f.write(json.dumps({"step": step, "keys": keys, "sources": sources}) + "\n")

    def advance(self) -> None:
        self.bar.update(1)

    def write_run_info(self, info: dict[str, Any]) -> None:
        """``{output_dir}/run.json``: world size, devices, machine, config (main process)."""
        if self.is_main:
            with open(os.path.join(os.path.dirname(self.metrics_path), "run.json"), "w") as f:
                json.dump(info, f, indent=1, default=str)

    def close(self) -> None:
        self.bar.close()
        self.accelerator.end_training()
