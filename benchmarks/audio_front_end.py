"""Audio branch cost by front end: HuBERT's learnable waveform layer against the fixed log-mel one.

Both front ends have the same window, hop and channel count (``denseav/front_end.py``), so the
rest of the audio branch is identical; this measures what the swap costs or saves. Per front
end, a freshly built model of the chosen preset in phase 2 (backbone training) runs the audio
branch (``DenseAV.encode_audio``) forward, and forward + backward, on a batch of 10 s clips with
the second half of every other clip zero-padded. Rounds are interleaved and the best of
``--repeats`` is kept; ratios are against the waveform front end measured in the same run.

    python benchmarks/audio_front_end.py                     # toy preset, batch 16, 2 threads
    python benchmarks/audio_front_end.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from shards.format import CLIP_SAMPLES

FRONT_ENDS = ("waveform", "log_mel")


def build(preset: str, front_end: str) -> DenseAV:
    config = getattr(DenseAVConfig, preset)(audio_front_end=front_end)
    model = DenseAV(config)
    model.set_phase(2)
    model.train()
    return model


def clips(batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, N)`` waveforms and their ``(B, N)`` sample masks (every other clip half padding)."""
    audio = torch.randn(batch_size, CLIP_SAMPLES, generator=generator) * 0.1
    mask = torch.ones_like(audio)
    mask[1::2, CLIP_SAMPLES // 2 :] = 0
    return audio * mask, mask


def run_once(model: DenseAV, audio: torch.Tensor, mask: torch.Tensor, backward: bool) -> float:
    start = time.perf_counter()
    if backward:
        model.zero_grad(set_to_none=True)
        model.encode_audio(audio, mask).features.square().mean().backward()
    else:
        with torch.no_grad():
            model.encode_audio(audio, mask)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--preset",
        default="toy",
        choices=["toy"],
        help="model preset (tiny's 10-sample first layer is too short for a mel filter bank)",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the best is kept")
    p.add_argument("--threads", type=int, default=2, help="torch compute threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    models = {name: build(args.preset, name) for name in FRONT_ENDS}
    audio, mask = clips(args.batch_size, torch.Generator().manual_seed(0))
    best: dict[tuple[str, bool], float] = {}
    for name, model in models.items():  # warm-up: allocator and kernels
        run_once(model, audio[:2], mask[:2], backward=True)
    for _ in range(args.repeats):
        for backward in (False, True):
            for name, model in models.items():
                seconds = run_once(model, audio, mask, backward)
                key = (name, backward)
                best[key] = min(best.get(key, float("inf")), seconds)

    print(
        f"audio branch of the {args.preset} preset, batch {args.batch_size} x 10 s, "
        f"{args.threads} thread(s), best of {args.repeats}"
    )
    print(f"{'front end':<10} {'mode':<16} {'ms':>9} {'vs waveform':>12}")
    for backward, mode in ((False, "forward"), (True, "forward+backward")):
        base = best[("waveform", backward)]
        for name in FRONT_ENDS:
            seconds = best[(name, backward)]
            print(f"{name:<10} {mode:<16} {seconds * 1e3:9.1f} {seconds / base:11.2f}x")


if __name__ == "__main__":
    main()
