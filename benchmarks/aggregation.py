"""Similarity aggregation: the fused, memory-bounded `aggregate` against the naive einsum volume
and against the matmul floor, measured in the same run.

    python benchmarks/aggregation.py                        # all default sizes, paper scale first
    python benchmarks/aggregation.py --sizes paper,b16 --repeats 5
    python benchmarks/aggregation.py --sizes 40x2x56x28x28x384 --threads 1

Sizes are presets (see --list-sizes) or `BxHEADSxTxHxWxC` (B audio clips against B images).
Per size, fresh Python processes (inputs `requires_grad`, a padded audio mask, kernels warmed up
on a tiny problem first):

- peak memory, one process per implementation: the process's peak resident set (`getrusage`
  ru_maxrss) after one forward+backward minus its resident set just before (/proc/self/statm),
  with glibc's MALLOC_MMAP_THRESHOLD_ fixed at 128 KiB so that freed buffers leave the resident
  set. An upper bound of what the call allocated, *including the two input-gradient tensors*
  (also shown without them).
- times, one process for all: best of --repeats interleaved rounds of the floor (one `torch.mm`
  (B*T, C/heads) x (C/heads, heads*B*H*W) into a preallocated output: the same multiply-adds,
  no reduction), then each implementation's forward and forward+backward. Wall clock by
  default; on a shared machine `--threads 1 --clock cpu` (CPU time of the process) is steadier.

The naive path is skipped (and said so) when its volume, gradient and temporaries (~5x the
volume) would not fit in --naive-max-gb or in 80% of the memory available now. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

# Paper scale first: B=80, 2 heads, T=56 audio tokens (~5.5 Hz x 10 s), 28x28 DINO ViT-S/8 tokens.
PRESETS = {
    "paper": "80x2x56x28x28x384",
    "b40": "40x2x56x28x28x384",
    "pooled": "80x2x56x14x14x384",
    "b16": "16x2x56x14x14x384",
    "b8-1head": "8x1x56x14x14x384",
}
NAIVE_PEAK_FACTOR = 5.0  # naive fwd+bwd peak / volume bytes (volume, its gradient, masks, copies)


@dataclass(frozen=True)
class Size:
    batch: int
    heads: int
    tokens: int
    height: int
    width: int
    channels: int

    @classmethod
    def parse(cls, text: str) -> Size:
        spec = PRESETS.get(text, text)
        try:
            values = [int(v) for v in spec.split("x")]
            size = cls(*values)
        except (ValueError, TypeError):
            raise SystemExit(
                f"--sizes: {text!r} is neither a preset {sorted(PRESETS)} nor BxHEADSxTxHxWxC"
            )
        if size.channels % size.heads:
            raise SystemExit(
                f"--sizes: {text!r}: C={size.channels} is not divisible by heads={size.heads}"
            )
        return size

    def __str__(self) -> str:
        return "x".join(str(v) for v in asdict(self).values())

    @property
    def volume_elements(self) -> int:
        return self.batch * self.batch * self.heads * self.tokens * self.height * self.width

    @property
    def input_elements(self) -> int:
        return self.batch * self.channels * (self.tokens + self.height * self.width)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


def _setup(size: Size, threads: int, chunk_elements: int):
    """Import torch in the worker, configure it, and build seeded inputs (padded audio mask)."""
    import torch

    from denseav import similarity

    torch.set_num_threads(threads)
    similarity.CHUNK_ELEMENTS = chunk_elements
    impls = {"fused": similarity.aggregate, "naive": similarity.aggregate_naive}

    def make_inputs(s: Size, seed: int):
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(s.batch, s.channels, s.tokens, generator=gen).requires_grad_()
        v = torch.randn(s.batch, s.channels, s.height, s.width, generator=gen).requires_grad_()
        valid = torch.randint(s.tokens // 2, s.tokens + 1, (s.batch, 1), generator=gen)
        mask = (torch.arange(s.tokens) < valid).float()
        weights = torch.randn(s.batch, s.batch, generator=gen)
        return a, v, mask, weights

    def forward_backward(impl: str, a, v, mask, weights) -> None:
        a.grad = v.grad = None
        (impls[impl](a, v, size.heads, mask) * weights).sum().backward()

    tiny = Size(2, size.heads, 4, 3, 3, size.heads * 2)
    for impl in impls:  # load the kernels before anything is measured
        forward_backward(impl, *make_inputs(tiny, 1))
    return torch, impls, make_inputs(size, 0), forward_backward


def memory_worker(impl: str, size: Size, threads: int, chunk_elements: int) -> dict:
    """Peak extra resident memory of one forward+backward, alone in this process."""
    _, _, inputs, forward_backward = _setup(size, threads, chunk_elements)
    gc.collect()
    before = _rss_bytes()
    forward_backward(impl, *inputs)
    return {"peak_extra_bytes": _peak_rss_bytes() - before}


def time_worker(
    impls: list[str], size: Size, repeats: int, threads: int, chunk_elements: int, clock: str
) -> dict:
    """Best-of-repeats times of the floor and of each implementation, interleaved."""
    now = time.perf_counter if clock == "wall" else time.process_time
    torch, fns, (a, v, mask, weights), forward_backward = _setup(size, threads, chunk_elements)
    d, hw = size.channels // size.heads, size.height * size.width
    lhs = torch.randn(size.batch * size.tokens, d)
    rhs = torch.randn(d, size.heads * size.batch * hw)
    out = torch.empty(lhs.shape[0], rhs.shape[1])
    cases = {"floor": lambda: torch.mm(lhs, rhs, out=out)}
    for impl in impls:
        cases[f"{impl}_forward"] = lambda impl=impl: fns[impl](a, v, size.heads, mask)
        cases[f"{impl}_forward_backward"] = lambda impl=impl: forward_backward(
            impl, a, v, mask, weights
        )
    best = {name: float("inf") for name in cases}
    for name, fn in cases.items():  # warm-up: first touch of every buffer
        fn()
    for _ in range(repeats):
        for name, fn in cases.items():
            start = now()
            fn()
            best[name] = min(best[name], now() - start)
    return best


def _run_worker(args: argparse.Namespace, size: Size, job: str) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        job,
        "--sizes",
        str(size),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--chunk-elements",
        str(args.chunk_elements),
        "--clock",
        args.clock,
    ]
    # For peak memory, glibc malloc returns every block >= 128 KiB to the system when freed (no
    # dynamic threshold), so the resident set follows what is alive, not what malloc keeps cached.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072") if job.startswith("memory") else None
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{job} at {size} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.3f}"


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}x"


def _memory(extra: float | None, volume: int) -> str:
    return "-" if extra is None else f"{extra / 1e6:.0f} ({extra / volume:.1%})"


def report(rows: list[dict]) -> str:
    """Markdown table: seconds with their ratio to the floor, MB with their ratio to the volume."""
    head = (
        "| size BxKxTxHxWxC | volume MB | floor s | naive fwd s | fused fwd s | fused/naive fwd "
        "| naive fwd+bwd s | fused fwd+bwd s | fused/naive fwd+bwd | naive peak MB | fused peak MB "
        "| fused peak w/o input grads MB |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        vol, t = r["volume_bytes"], r["times"]
        floor = t["floor"]
        naive_fwd, naive_both = t.get("naive_forward"), t.get("naive_forward_backward")
        naive_mem = r.get("naive_peak_extra_bytes")
        fused_mem = r["fused_peak_extra_bytes"]
        lines.append(
            " | ".join(
                [
                    f"| {r['size']}",
                    f"{vol / 1e6:.0f}",
                    _fmt(floor),
                    f"{_fmt(naive_fwd)} ({_ratio(naive_fwd, floor)})"
                    if naive_fwd
                    else r["naive_skipped"],
                    f"{_fmt(t['fused_forward'])} ({_ratio(t['fused_forward'], floor)})",
                    _ratio(t["fused_forward"], naive_fwd),
                    f"{_fmt(naive_both)} ({_ratio(naive_both, floor)})" if naive_both else "-",
                    f"{_fmt(t['fused_forward_backward'])} ({_ratio(t['fused_forward_backward'], floor)})",
                    _ratio(t["fused_forward_backward"], naive_both),
                    _memory(naive_mem, vol),
                    _memory(fused_mem, vol),
                    _memory(fused_mem - r["input_grad_bytes"], vol) + " |",
                ]
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--sizes",
        default=",".join(PRESETS),
        help="comma-separated presets or BxHEADSxTxHxWxC (default: all presets)",
    )
    parser.add_argument("--list-sizes", action="store_true", help="print the presets and exit")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed rounds (the best of each is kept)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--chunk-elements",
        type=int,
        default=0,
        help="fused path's scores per chunk (0: denseav.similarity.CHUNK_ELEMENTS)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (robust to other jobs "
        "on the machine, meaningful with --threads 1)",
    )
    parser.add_argument(
        "--naive-max-gb",
        type=float,
        default=12.0,
        help=f"skip the naive path when ~{NAIVE_PEAK_FACTOR:g}x its volume exceeds this",
    )
    parser.add_argument("--json", help="also write the raw measurements to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # memory:IMPL or time:IMPL,IMPL
    args = parser.parse_args(argv)

    if args.list_sizes:
        for name, spec in PRESETS.items():
            print(f"{name:10s} {spec}")
        return
    if not args.threads or not args.chunk_elements:
        import torch

        from denseav.similarity import CHUNK_ELEMENTS

        args.threads = args.threads or torch.get_num_threads()
        args.chunk_elements = args.chunk_elements or CHUNK_ELEMENTS
    sizes = [Size.parse(s) for s in args.sizes.split(",") if s]
    if args.worker:
        kind, impls = args.worker.split(":")
        if kind == "memory":
            result = memory_worker(impls, sizes[0], args.threads, args.chunk_elements)
        else:
            result = time_worker(
                impls.split(","),
                sizes[0],
                args.repeats,
                args.threads,
                args.chunk_elements,
                args.clock,
            )
        print(json.dumps(result))
        return

    print(
        f"threads={args.threads} chunk_elements={args.chunk_elements} repeats={args.repeats} "
        f"clock={args.clock}",
        flush=True,
    )
    rows = []
    for i, size in enumerate(sizes, 1):
        volume_bytes = size.volume_elements * 4
        row = {
            "size": str(size),
            "volume_bytes": volume_bytes,
            "input_grad_bytes": size.input_elements * 4,
        }
        need, available = NAIVE_PEAK_FACTOR * volume_bytes, _available_bytes()
        impls = ["fused"]
        if need > args.naive_max_gb * 1e9 or need > 0.8 * available:
            row["naive_skipped"] = f"skipped: needs ~{need / 1e9:.0f} GB"
            print(
                f"[{i}/{len(sizes)}] {size}: naive skipped (needs ~{need / 1e9:.1f} GB; --naive-max-gb "
                f"{args.naive_max_gb:g}, {available / 1e9:.1f} GB available)",
                flush=True,
            )
        else:
            impls.insert(0, "naive")
        for impl in impls:
            print(f"[{i}/{len(sizes)}] {size}: {impl} peak memory ...", flush=True)
            row[f"{impl}_peak_extra_bytes"] = _run_worker(args, size, f"memory:{impl}")[
                "peak_extra_bytes"
            ]
        print(
            f"[{i}/{len(sizes)}] {size}: times of the floor and {' and '.join(impls)} ...",
            flush=True,
        )
        row["times"] = _run_worker(args, size, "time:" + ",".join(impls))
        rows.append(row)
    print()
    print(report(rows))
    print(
        f"\ntimes: best of {args.repeats} rounds, {args.clock} clock, {args.threads} thread(s), float32, seconds "
        "(ratio to the floor); peak: extra resident memory of one fwd+bwd in a fresh process, MB (ratio to "
        "the volume's float32 size)."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": vars(args), "results": rows}, f, indent=2)
        print(f"raw measurements written to {args.json}")


if __name__ == "__main__":
    main()
