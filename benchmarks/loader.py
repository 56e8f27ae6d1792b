"""Loader throughput: decoded samples/s from local shards and from a local S3 server, against
the raw read rate of the same bytes (the baseline), measured in the same run.

    python benchmarks/loader.py                      # defaults: 8 shards x 24 samples, 2 workers
    python benchmarks/loader.py --workers 0 --frames 4

It writes a synthetic dataset (real format, noise audio, 224x224 frames) under --workdir, copies
it to a SeaweedFS server started on 127.0.0.1 (stopped at the end), then times, best of
--repeats: raw reads of every shard (bytes only), and one full evaluation pass through
`build_eval_loader` (tar parsing, FLAC and JPEG decoding, DataLoader workers).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from collections.abc import Callable

from shards import storage
from shards.index import load_index
from shards.loader import build_eval_loader
from shards.local_s3 import LocalS3Server
from shards.synthetic import write_synthetic_dataset


def best_time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """Smallest wall time of ``repeats`` runs of ``fn`` (which returns a count)."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = fn()
        best = min(best, time.perf_counter() - start)
    return best, count


def raw_read(urls: list[str]) -> int:
    return sum(len(storage.read_bytes(u)) for u in urls)


def decoded_pass(url: str, batch_size: int, workers: int) -> int:
    loader = build_eval_loader(url, batch_size=batch_size, num_workers=workers)
    return sum(len(batch) for batch in loader)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--samples-per-shard", type=int, default=24)
    parser.add_argument("--frames", type=int, default=2, help="frames per sample")
    parser.add_argument("--frame-size", type=int, default=224, help="frame height and width")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--workdir", default="/tmp/shards-bench", help="scratch folder (deleted at the end)"
    )
    args = parser.parse_args(argv)

    local = os.path.join(args.workdir, "local")
    shutil.rmtree(args.workdir, ignore_errors=True)
    print(f"writing {args.shards} x {args.samples_per_shard} samples to {local} ...")
    write_synthetic_dataset(
        local,
        args.shards,
        args.samples_per_shard,
        seed=0,
        name="bench",
        num_frames=args.frames,
        frame_size=(args.frame_size, args.frame_size),
    )
    index = load_index(local)
    nbytes, nsamples = index.total_bytes, index.total_samples

    server = LocalS3Server(workdir=os.path.join(args.workdir, "s3"))
    server.start()
    saved_env = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)
    try:
        server.create_bucket("bench")
        remote = "s3://bench/ds"
        for name in storage.listdir(local):
            storage.upload_file(os.path.join(local, name), storage.join(remote, name))
        s3_urls = load_index(remote).urls

        rows = {}
        for label, fn in [
            ("raw read, local", lambda: raw_read(index.urls)),
            ("raw read, S3", lambda: raw_read(s3_urls)),
            ("decoded, local", lambda: decoded_pass(local, args.batch_size, args.workers)),
            ("decoded, S3", lambda: decoded_pass(remote, args.batch_size, args.workers)),
        ]:
            seconds, count = best_time(fn, args.repeats)
            if label.startswith("decoded"):
                assert count == nsamples, f"{label}: read {count} of {nsamples} samples"
            rows[label] = nsamples / seconds
            print(
                f"{label:16s} {nsamples / seconds:9.1f} samples/s  "
                f"{nbytes / seconds / 1e6:8.1f} MB/s  ({seconds:.3f} s)"
            )
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)

    print(
        f"\n{nsamples} samples, {nbytes / nsamples / 1e3:.0f} kB/sample, "
        f"{args.workers} workers, {os.cpu_count()} CPUs"
    )
    print(f"decoded/raw, local : {rows['decoded, local'] / rows['raw read, local']:.3f}")
    print(f"decoded/raw, S3    : {rows['decoded, S3'] / rows['raw read, S3']:.3f}")
    print(f"S3/local, decoded  : {rows['decoded, S3'] / rows['decoded, local']:.3f}")
    print(f"S3/local, raw      : {rows['raw read, S3'] / rows['raw read, local']:.3f}")


if __name__ == "__main__":
    main()
