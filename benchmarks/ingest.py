"""Ingest throughput: clips/s per core of the media stage on a fixed set of files.

Measured in the same run, on the same files, each on ONE core (the process is pinned to one CPU
and every decoder runs single-threaded), best of `--repeats`. clips/s/core is clips per CPU
second (this process and the ffmpeg processes it runs), which a busy shared machine disturbs
far less than wall time (also printed):

- ceiling:     `ffmpeg -threads 1 -i FILE -f null -`: decoding every audio and video frame and
               nothing else (no resampling, scaling, JPEG or FLAC): the ceiling of any pipeline
               that decodes every frame.
- pyav:        ours (ingest.media.decode_clips + shards.format.encode_sample): one PyAV pass per
               file -> 16 kHz mono audio and 3 JPEG frames per 10 s clip -> encoded samples. It
               leaves groups of pictures that show no chosen frame undecoded, so with keyframes
               closer than the frame spacing it can beat the ceiling.
- decord:      decord for the frames + ffmpeg-python (imageio-ffmpeg's binary) for the audio,
               the stack first suggested for this project; only if `decord` is importable.
- reencode:    the video2dataset way: each stage a separate ffmpeg run through temporary files
               (cut the clip and re-encode it, extract the audio to WAV, extract the frames to
               JPEG), then read the files back and encode the sample.

With `--ray` it also runs the whole job (`ingest.distribute.run_job`, local Ray on all cores) on
the same files, and reports its clips/s per core.

    python benchmarks/ingest.py [--files 4] [--seconds 30] [--gop-seconds 2] [--repeats 2] [--ray]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named like the `ingest` package; run as a script, its own folder would come first
# on sys.path and hide the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import av
import numpy as np
import soundfile as sf

from ingest.media import (
    MediaOptions,
    clip_windows,
    decode_clips,
    encode_jpeg,
    frame_times,
    scaled_size,
)
from ingest.synthetic import MediaSpec, ffmpeg_exe, make_media, run_ffmpeg
from shards.format import CLIP_SAMPLES, SAMPLE_RATE, encode_sample

OPTIONS = MediaOptions(frames_per_clip=3, short_side=256, decode_threads=1)


def make_files(folder: Path, count: int, seconds: float, gop_seconds: float) -> list[Path]:
    """A fixed set: H.264/AAC 640x360 30 fps stereo 44.1 kHz MP4s, every third one VP9/Opus WebM,
    with a keyframe every `gop_seconds`."""
    files = []
    gop = ("-g", str(round(30 * gop_seconds)))
    for i in range(count):
        if i % 3 == 2:
            spec = MediaSpec(
                seconds=seconds,
                width=640,
                height=360,
                fps=30,
                video_codec="libvpx-vp9",
                audio_codec="libopus",
                sample_rate=48000,
                tone_hz=300 + 50 * i,
                extra_args=("-deadline", "realtime", "-cpu-used", "8", "-b:v", "600k", *gop),
            )
            path = folder / f"in{i}-gop{gop[1]}f.webm"
        else:
            spec = MediaSpec(
                seconds=seconds,
                width=640,
                height=360,
                fps=30,
                tone_hz=300 + 50 * i,
                extra_args=("-preset", "veryfast", "-b:v", "600k", *gop),
            )
            path = folder / f"in{i}-gop{gop[1]}f.mp4"
        if not path.exists():
            make_media(path, spec)
        files.append(path)
    return files


def _sample(key: str, audio: np.ndarray, frames, start: float) -> dict:
    return encode_sample(
        key, audio[:CLIP_SAMPLES], frames, {"source": "bench", "clip_start": start}
    )


def run_ceiling(files: list[Path], scratch: Path) -> int:
    for f in files:
        subprocess.run(
            [
                ffmpeg_exe(),
                "-v",
                "error",
                "-threads",
                "1",
                "-i",
                str(f),
                "-map",
                "0",
                "-f",
                "null",
                "-",
            ],
            check=True,
        )
    return 0


def run_pyav(files: list[Path], scratch: Path) -> int:
    clips = 0
    for f in files:
        _, decoded = decode_clips(f, OPTIONS)
        for i, clip in enumerate(decoded):
            _sample(f"{f.stem}-{i}", clip.audio, clip.frames, clip.start)
            clips += 1
    return clips


def run_decord(files: list[Path], scratch: Path) -> int:
    import decord
    import ffmpeg

    clips = 0
    for f in files:
        shape = decord.VideoReader(str(f), num_threads=1)[0].shape
        width, height = scaled_size(shape[1], shape[0], OPTIONS.short_side)
        reader = decord.VideoReader(str(f), num_threads=1, width=width, height=height)
        fps = reader.get_avg_fps()
        raw, _ = (
            ffmpeg.input(str(f))
            .output("pipe:", format="f32le", ac=1, ar=SAMPLE_RATE)
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
        )
        audio = np.frombuffer(raw, np.float32)
        duration = len(reader) / fps
        for i, (start, end) in enumerate(clip_windows(duration, OPTIONS)):
            times = frame_times(start, end, OPTIONS.frames_per_clip)
            index = [min(len(reader) - 1, int(t * fps)) for t in times]
            frames = [
                encode_jpeg(a, OPTIONS.jpeg_quality) for a in reader.get_batch(index).asnumpy()
            ]
            piece = audio[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
            _sample(f"{f.stem}-{i}", piece, frames, start)
            clips += 1
    return clips


def run_reencode(files: list[Path], scratch: Path) -> int:
    clips = 0
    for f in files:
        with av.open(str(f)) as container:  # the probe step (ffprobe in video2dataset)
            duration = container.duration / av.time_base
        for i, (start, end) in enumerate(clip_windows(duration, OPTIONS)):
            work = scratch / f"{f.stem}-{i}"
            work.mkdir(parents=True, exist_ok=True)
            cut = work / "clip.mp4"
            run_ffmpeg(
                [
                    "-threads",
                    "1",
                    "-ss",
                    str(start),
                    "-t",
                    str(end - start),
                    "-i",
                    str(f),
                    "-c:v",
                    "libx264",
                    "-preset",
                    "veryfast",
                    "-c:a",
                    "aac",
                    "-threads",
                    "1",
                    str(cut),
                ]
            )
            run_ffmpeg(
                [
                    "-threads",
                    "1",
                    "-i",
                    str(cut),
                    "-vn",
                    "-ac",
                    "1",
                    "-ar",
                    str(SAMPLE_RATE),
                    str(work / "audio.wav"),
                ]
            )
            frames = []
            for k, t in enumerate(frame_times(0.0, end - start, OPTIONS.frames_per_clip)):
                jpg = work / f"frame{k}.jpg"
                run_ffmpeg(
                    [
                        "-threads",
                        "1",
                        "-ss",
                        f"{t:.3f}",
                        "-i",
                        str(cut),
                        "-frames:v",
                        "1",
                        "-vf",
                        f"scale=-2:{OPTIONS.short_side}",
                        "-q:v",
                        "3",
                        str(jpg),
                    ]
                )
                frames.append(jpg.read_bytes())
            audio, _ = sf.read(work / "audio.wav", dtype="float32")
            _sample(f"{f.stem}-{i}", audio, frames, start)
            shutil.rmtree(work)
            clips += 1
    return clips


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, it does not count
    the time other programs on a shared machine take from us."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_ray_job(files: list[Path], out: Path) -> tuple[int, float, float]:
    from ingest.config import JobOptions, RayOptions
    from ingest.distribute import run_job
    from ingest.items import WorkItem

    items = [WorkItem(key=f.stem, source="bench", location=str(f)) for f in files]
    job = JobOptions(
        output=str(out),
        items_per_shard=1,
        progress=False,
        media=MediaOptions(frames_per_clip=3, short_side=256, decode_threads=1),
        ray=RayOptions(memory=2 << 30, object_store_memory=128 << 20),
    )
    summary = run_job(items, job)
    return summary.new_samples, summary.clips_per_second, summary.clips_per_second_per_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--gop-seconds",
        type=float,
        default=2.0,
        help="keyframe interval of the inputs (web video: about 2-5 s)",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "denseav-ingest-bench")
    )
    parser.add_argument(
        "--ray", action="store_true", help="also time the whole Ray job on all cores"
    )
    args = parser.parse_args()

    cache = Path(args.cache)
    files = make_files(cache / "inputs", args.files, args.seconds, args.gop_seconds)
    all_cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {all_cpus[-1]})  # one core for us and the ffmpeg we start
    variants = {
        "ceiling": run_ceiling,
        "pyav": run_pyav,
        "decord": run_decord,
        "reencode": run_reencode,
    }
    try:
        import decord  # noqa: F401
    except ImportError:
        del variants["decord"]
        print("decord is not installed: its variant is skipped")
    clips = run_pyav(files, cache)  # warm-up (page cache, imports); gives the clip count
    best_cpu = {name: float("inf") for name in variants}
    best_wall = dict(best_cpu)
    for _ in range(args.repeats):
        for name, run in variants.items():
            scratch = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
            cpu, wall = _cpu_seconds(), time.perf_counter()
            made = run(files, scratch)
            best_cpu[name] = min(best_cpu[name], _cpu_seconds() - cpu)
            best_wall[name] = min(best_wall[name], time.perf_counter() - wall)
            shutil.rmtree(scratch)
            assert made in (0, clips), f"{name} made {made} clips, expected {clips}"
    print(
        f"{len(files)} files x {args.seconds:g} s (640x360 30 fps, keyframe every "
        f"{args.gop_seconds:g} s; H.264/AAC and VP9/Opus) = {clips} clips of 10 s, 3 frames each; "
        f"one core, best of {args.repeats}"
    )
    print(
        f"{'variant':<10} {'CPU s':>7} {'wall s':>7} {'clips/s/core':>13} {'x ceiling':>10} "
        f"{'speed-up vs reencode':>21}"
    )
    for name, cpu in best_cpu.items():
        print(
            f"{name:<10} {cpu:7.2f} {best_wall[name]:7.2f} {clips / cpu:13.2f} "
            f"{cpu / best_cpu['ceiling']:10.2f} {best_cpu['reencode'] / cpu:21.2f}"
        )
    if args.ray:
        os.sched_setaffinity(0, set(all_cpus))
        out = Path(tempfile.mkdtemp(prefix="ray-out-", dir=cache))
        made, rate, per_core = run_ray_job(files, out)
        shutil.rmtree(out)
        print(
            f"ray job   {made} clips, {rate:.2f} clips/s on {len(all_cpus)} cores = "
            f"{per_core:.2f} clips/s per core (end to end: shards written, index built)"
        )


if __name__ == "__main__":
    main()
