"""Generating a whole toy world: the three raw layouts plus ``manifest.json``.

Work items (one caption, one video, one prompt) are independent: each draws from its own seed
stream (:meth:`WorldConfig.rng`) and writes its own files, so they run in a process pool and the
result does not depend on the number of workers. Index files and the manifest are written by the
parent process afterwards; the manifest comes last and marks a complete world.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from ingest.toyworld import audioset, evalsets, placesaudio
from ingest.toyworld.config import WorldConfig
from ingest.toyworld.speech import SPEAKERS

# 1.1.0: sound prompts carry the noise floor; 1.2.0: sound retrieval videos; 1.3.0: every class
# sound fills most of its recording (ball, box, heart, fish, clock, moon, boat, cup, horn denser)
GENERATOR_VERSION = "1.3.0"
OUTPUTS = ("placesaudio", "audioset", "eval", "manifest.json")
SEGMENTS_CSV = "audioset/toyworld_segments.csv"
EVAL_SEGMENTS_CSV = "audioset/toyworld_eval_segments.csv"
RETRIEVAL_SEGMENTS_CSV = "audioset/toyworld_retrieval_segments.csv"
CLASS_LABELS_CSV = "audioset/class_labels_indices.csv"
VIDEOS_DIR = f"audioset/{audioset.VIDEOS_SUBDIR}"
VIDEO_PATH_TEMPLATE = f"{VIDEOS_DIR}/{audioset.VIDEO_FILE_TEMPLATE}"

Task = tuple[str, str, int]
_STATE: dict = {}


def _init_worker(cfg: WorldConfig, out: str) -> None:
    _STATE["cfg"], _STATE["out"] = cfg, Path(out)


def _run(task: Task) -> tuple[Task, dict]:
    cfg, out = _STATE["cfg"], _STATE["out"]
    corpus, part, index = task
    if corpus == "audioset":
        return task, audioset.make_video(cfg, out / "audioset", index, part)
    if corpus == "placesaudio":
        return task, placesaudio.make_caption(cfg, out / "placesaudio", part, index)
    return task, evalsets.make_prompt(cfg, out / "eval" / part, part, index)


def _tasks(cfg: WorldConfig) -> list[Task]:
    # Videos first: they are the slowest items, so the pool stays balanced at the end.
    tasks: list[Task] = [("audioset", "train", i) for i in range(cfg.videos)]
    tasks += [("audioset", "eval", i) for i in range(cfg.eval_videos)]
    tasks += [("audioset", "retrieval", i) for i in range(cfg.retrieval_videos)]
    tasks += [("placesaudio", "train", i) for i in range(cfg.speech_train)]
    tasks += [("placesaudio", "val", i) for i in range(cfg.speech_val)]
    for kind in evalsets.KINDS:
        tasks += [("eval", kind, i) for i in range(evalsets.num_prompts(cfg, kind))]
    return tasks


def _execute(
    cfg: WorldConfig, out: Path, tasks: list[Task], workers: int, progress: bool
) -> Iterator[tuple[Task, dict]]:
    bar = {"total": len(tasks), "desc": "toyworld", "unit": "item", "disable": not progress}
    if workers <= 1:
        _init_worker(cfg, str(out))
        yield from tqdm(map(_run, tasks), **bar)
        return
    # spawn, not fork: the caller may hold threads (torch, Ray) that a fork would copy mid-state.
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg, str(out))) as pool:
        yield from tqdm(pool.imap(_run, tasks, chunksize=2), **bar)


def prepare_output(out: Path, force: bool) -> None:
    """Make ``out`` ready: it must be empty or missing, unless ``force``, which removes only the
    generator's own outputs from it."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty; pass --force to replace a world there")
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate_world(
    cfg: WorldConfig,
    out: str | os.PathLike,
    workers: int | None = None,
    size_name: str = "custom",
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Generate the world described by ``cfg`` into ``out``; returns the manifest (also written
    to ``out/manifest.json``). ``workers`` defaults to the number of CPU cores."""
    out = Path(out)
    prepare_output(out, force)
    workers = (os.cpu_count() or 1) if workers is None else workers
    results: dict[tuple[str, str], list[dict]] = {}
    for (corpus, part, _), record in _execute(cfg, out, _tasks(cfg), workers, progress):
        results.setdefault((corpus, part), []).append(record)

    for split in placesaudio.SPLITS:
        placesaudio.write_metadata(
            out / "placesaudio", split, results.get(("placesaudio", split), [])
        )
    videos = {split: results.get(("audioset", split), []) for split in audioset.SPLITS}
    segments_csv = {
        "train": SEGMENTS_CSV,
        "eval": EVAL_SEGMENTS_CSV,
        "retrieval": RETRIEVAL_SEGMENTS_CSV,
    }
    num_segments = {
        split: audioset.write_segments_csv(out / csv, videos[split], cfg.num_classes)
        for split, csv in segments_csv.items()
    }
    audioset.write_class_labels_csv(out / CLASS_LABELS_CSV, cfg.classes)
    all_videos = [v for split in audioset.SPLITS for v in videos[split]]
    (out / "audioset" / "videos.json").write_text(json.dumps(all_videos, indent=1) + "\n")
    for kind in evalsets.KINDS:
        evalsets.write_csv(out / "eval" / kind, kind, results.get(("eval", kind), []))

    manifest = {
        "generator": "ingest.toyworld",
        "version": GENERATOR_VERSION,
        "seed": cfg.seed,
        "size": size_name,
        "config": cfg.to_dict(),
        "classes": [
            {
                "name": c.name,
                "adjective": c.adjective,
                "color": list(c.color),
                "sound": c.sound,
                "mid": c.mid,
                "display_name": c.display_name,
                "ade_class_id": c.ade_class_id,
                "named": c in cfg.named_classes,
                "sounding": c in cfg.sounding_classes,
            }
            for c in cfg.classes
        ],
        "speakers": [s.speaker_id for s in SPEAKERS],
        "counts": {
            "placesaudio_train": cfg.speech_train,
            "placesaudio_val": cfg.speech_val,
            "audioset_videos": len(videos["train"]),
            "audioset_segments": num_segments["train"],
            "audioset_video_seconds": sum(v["duration"] for v in videos["train"]),
            "audioset_eval_videos": len(videos["eval"]),
            "audioset_eval_segments": num_segments["eval"],
            "audioset_retrieval_videos": len(videos["retrieval"]),
            "audioset_retrieval_segments": num_segments["retrieval"],
            "eval_speech_prompts": evalsets.num_prompts(cfg, "speech"),
            "eval_sound_prompts": evalsets.num_prompts(cfg, "sound"),
        },
        "paths": {
            "placesaudio_root": "placesaudio",
            "placesaudio_metadata": {
                s: f"placesaudio/metadata/{s}.json" for s in placesaudio.SPLITS
            },
            "audioset_segments_csv": SEGMENTS_CSV,
            "audioset_eval_segments_csv": EVAL_SEGMENTS_CSV,
            "audioset_retrieval_segments_csv": RETRIEVAL_SEGMENTS_CSV,
            "audioset_class_labels_csv": CLASS_LABELS_CSV,
            "audioset_video_template": VIDEO_PATH_TEMPLATE,
            "audioset_videos_json": "audioset/videos.json",
            "eval_speech": "eval/speech",
            "eval_sound": "eval/sound",
        },
        "media": {
            "image_size": cfg.image_size,
            "video_fps": cfg.fps,
            "video_codec": "h264",
            "audio_codec": "aac",
            "video_audio_rate": audioset.VIDEO_AUDIO_RATE,
            "wav_rate": 16000,
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def video_url_template(world: str | os.PathLike, base_url: str | None = None) -> str:
    """The URL template (with ``{YTID}``) of a world's videos: ``base_url/{YTID}.mp4`` when the
    videos folder is served over HTTP (e.g. ``http://127.0.0.1:8000``), else a file URL."""
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{audioset.VIDEO_FILE_TEMPLATE}"
    return f"{(Path(world).resolve() / VIDEOS_DIR).as_uri()}/{audioset.VIDEO_FILE_TEMPLATE}"
