"""`python -m ingest SOURCE ...`: the command line of the ingest jobs.

Each source (audioset, placesaudio, videos) adds its own arguments and plans its work items;
the options shared by all (output, sharding, media, download, Ray) live here.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from types import ModuleType

from yt_dlp.utils import parse_bytes

from ingest.config import JobOptions, RayOptions
from ingest.distribute import ray_session, run_job
from ingest.fetch import FetchOptions
from ingest.media import MediaOptions


def _sources() -> dict[str, ModuleType]:
    from ingest.sources import audioset, placesaudio, videos

    return {"audioset": audioset, "placesaudio": placesaudio, "videos": videos}


def _bytes(text: str) -> int:
    value = parse_bytes(text)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 4G")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("output")
    out.add_argument("--output", "-o", required=True, help="dataset folder or s3://bucket/prefix")
    out.add_argument(
        "--items-per-shard",
        type=int,
        default=100,
        help="inputs per shard, the unit of work of one Ray task (default 100)",
    )
    out.add_argument(
        "--retry-failed",
        action="store_true",
        help="redo only the failed inputs of shards that are already done",
    )
    out.add_argument("--limit", type=int, default=None, help="only the first N inputs")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")

    m = parser.add_argument_group("media")
    d = MediaOptions()
    m.add_argument(
        "--frames-per-clip",
        type=int,
        default=d.frames_per_clip,
        help=f"frames sampled evenly inside each clip (default {d.frames_per_clip})",
    )
    m.add_argument(
        "--short-side",
        type=int,
        default=d.short_side,
        help=f"frames are scaled down to this short side in pixels (default {d.short_side})",
    )
    m.add_argument("--jpeg-quality", type=int, default=d.jpeg_quality)
    m.add_argument(
        "--first-clip-only",
        action="store_true",
        help="one clip per input, from its start (default: every 10 s clip)",
    )
    m.add_argument(
        "--min-clip-seconds",
        type=float,
        default=d.min_clip_seconds,
        help="drop a last piece shorter than this (padded to 10 s otherwise)",
    )
    m.add_argument(
        "--audio-only",
        action="store_true",
        help="keep inputs without video (one grey placeholder frame, meta audio_only)",
    )
    m.add_argument(
        "--decode-threads",
        type=int,
        default=d.decode_threads,
        help="FFmpeg threads per decoder (0: FFmpeg picks)",
    )

    f = parser.add_argument_group("download (yt-dlp)")
    fd = FetchOptions()
    f.add_argument(
        "--min-height",
        type=int,
        default=fd.min_height,
        help=f"smallest video at or above this height, with audio (default {fd.min_height})",
    )
    f.add_argument("--socket-timeout", type=float, default=fd.socket_timeout)
    f.add_argument("--retries", type=int, default=fd.retries, help="per request and fragment")
    f.add_argument("--rate-limit", default=None, help="bytes per second per download, e.g. 2M")
    f.add_argument("--sleep-interval", type=float, default=0.0, help="seconds before each download")
    f.add_argument("--cookies", default=None, help="Netscape cookies.txt passed to yt-dlp")
    f.add_argument("--scratch-dir", default=None, help="where downloads wait to be decoded")

    r = parser.add_argument_group("ray")
    rd = RayOptions()
    r.add_argument(
        "--ray-address",
        default=None,
        help="existing cluster, e.g. 10.0.0.1:6379 (default: a private local instance)",
    )
    r.add_argument("--num-cpus", type=int, default=None, help="local instance CPUs (default all)")
    r.add_argument(
        "--memory", type=_bytes, default=rd.memory, help="local instance memory, e.g. 4G"
    )
    r.add_argument("--object-store-memory", type=_bytes, default=rd.object_store_memory)
    r.add_argument("--concurrency", type=int, default=None, help="most shard tasks at once")
    r.add_argument("--task-cpus", type=float, default=rd.task_cpus, help="CPUs per shard task")
    r.add_argument(
        "--task-memory", type=_bytes, default=None, help="memory per shard task, e.g. 1G"
    )
    r.add_argument("--task-retries", type=int, default=rd.task_retries)
    r.add_argument("--ray-temp-dir", default=None, help="local instance session folder")


def job_options(args: argparse.Namespace) -> JobOptions:
    """The `JobOptions` of parsed common arguments."""
    return JobOptions(
        output=args.output,
        items_per_shard=args.items_per_shard,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        media=MediaOptions(
            frames_per_clip=args.frames_per_clip,
            short_side=args.short_side,
            jpeg_quality=args.jpeg_quality,
            max_clips=1 if args.first_clip_only else None,
            min_clip_seconds=args.min_clip_seconds,
            audio_only=args.audio_only,
            decode_threads=args.decode_threads,
        ),
        fetch=FetchOptions(
            min_height=args.min_height,
            socket_timeout=args.socket_timeout,
            retries=args.retries,
            rate_limit=args.rate_limit,
            sleep_interval=args.sleep_interval,
            cookies=args.cookies,
            scratch_dir=args.scratch_dir,
        ),
        ray=RayOptions(
            address=args.ray_address,
            num_cpus=args.num_cpus,
            memory=args.memory,
            object_store_memory=args.object_store_memory,
            concurrency=args.concurrency,
            task_cpus=args.task_cpus,
            task_memory=args.task_memory,
            task_retries=args.task_retries,
            temp_dir=args.ray_temp_dir,
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Turn a corpus into DenseAV training shards (16 kHz 10 s clips with frames) "
        "with Ray. Reruns skip finished shards.",
    )
    sub = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    for name, module in _sources().items():
        p = sub.add_parser(
            name,
            help=module.__doc__.splitlines()[0],
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        _add_common(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = _sources()[args.source]
    try:
        job = job_options(args)
        # Archive downloads are Ray tasks too: then one session serves planning and the run.
        planning_uses_ray = bool(getattr(args, "archive_url", None))
        with ray_session(job.ray) if planning_uses_ray else contextlib.nullcontext():
            items = module.plan_from_args(args)
            summary = run_job(items, job)
    except (ValueError, OSError) as e:  # bad table, options or output: say what, stop
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.format())
    print(f"shards, index.json and ingest_summary.json are in {job.output}")
    return 0 if summary.complete else 1
