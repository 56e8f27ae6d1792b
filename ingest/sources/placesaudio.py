"""PlacesAudio spoken captions with their Places images.

PlacesAudio: spoken captions of Places images (`metadata/{split}.json` with wav and image
paths, ASR text, speaker, uttid and optional word alignments), read from a local folder or S3,
or first downloaded from the URLs of its distribution archive (and of the Places images
archive) by Ray tasks with resumable, checksummed downloads. The image becomes `frame0.jpg`;
the caption's first 10 s are the audio (padded, valid length recorded); text and word timings
(relative to the clip) go into the metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
from pathlib import Path

from ingest.download import Archive, fetch_all
from ingest.items import Window, WorkItem, check_unique_keys, safe_key
from ingest.sources.placesaudio_meta import parse_metadata
from shards import storage
from shards.format import CLIP_SECONDS

SOURCE = "placesaudio"


def _resolve(base: str, metadata_dir: str) -> str:
    """A base path of the metadata, relative to the metadata folder (local or s3://)."""
    if "://" in base or os.path.isabs(base):
        return base
    if storage.is_s3(metadata_dir):
        bucket, key = storage.split_s3(metadata_dir)
        return f"s3://{bucket}/{posixpath.normpath(posixpath.join(key, base))}"
    return os.path.normpath(os.path.join(metadata_dir, base))


def find_root(folders: list[str], split: str) -> str:
    """The folder among (or below, two levels deep) `folders` holding `metadata/{split}.json`."""
    for folder in folders:
        for candidate in [Path(folder), *Path(folder).glob("*"), *Path(folder).glob("*/*")]:
            if (candidate / "metadata" / f"{split}.json").is_file():
                return str(candidate)
    raise ValueError(f"no metadata/{split}.json in the downloaded archives {folders}")


def plan(
    root: str,
    splits: tuple[str, ...] | list[str] = ("train",),
    image_base_path: str | None = None,
    audio_base_path: str | None = None,
    limit: int | None = None,
) -> list[WorkItem]:
    """One work item per caption of the `splits` (first `limit` of each if given)."""
    if not storage.is_s3(root):
        root = os.path.abspath(root)  # Ray workers may run elsewhere than here
    items = []
    for split in splits:
        metadata_url = storage.join(root, "metadata", f"{split}.json")
        try:
            doc = json.loads(storage.read_bytes(metadata_url))
        except FileNotFoundError as e:
            raise ValueError(
                f"{metadata_url} does not exist (is {root} a PlacesAudio folder?)"
            ) from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{metadata_url}:{e.lineno}: invalid JSON: {e.msg}") from e
        metadata_dir = storage.join(root, "metadata")
        bases = {
            "image_base_path": image_base_path
            or _resolve(str(doc.get("image_base_path", "")), metadata_dir),
            "audio_base_path": audio_base_path
            or _resolve(str(doc.get("audio_base_path", "")), metadata_dir),
        }
        utterances = parse_metadata(doc, metadata_url, None, **bases)
        for utt in utterances[:limit] if limit else utterances:
            key = safe_key(utt.uttid)
            meta = {
                "id": utt.uttid,
                "url": utt.wav,
                "image": utt.image,
                "speaker": utt.speaker,
                "caption": utt.asr_text,
                "split": split,
            }
            if utt.words is not None:
                meta["words"] = [
                    {"word": w.word, "start": w.start, "end": w.end} for w in utt.words
                ]
            items.append(
                WorkItem(
                    key=key,
                    source=SOURCE,
                    location=utt.wav,
                    windows=[Window(0.0, CLIP_SECONDS, key)],
                    image=utt.image,
                    meta=meta,
                )
            )
    check_unique_keys(items, root)
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root",
        nargs="?",
        default=None,
        help="PlacesAudio folder (local or s3://) holding metadata/{split}.json",
    )
    parser.add_argument(
        "--split",
        action="append",
        default=None,
        help="metadata split(s) to ingest (default: train; repeatable)",
    )
    parser.add_argument(
        "--archive-url",
        action="append",
        default=[],
        help="download and extract this archive first (URL or URL#sha256=HEX / "
        "#md5=HEX; repeatable: the distribution and the Places images)",
    )
    parser.add_argument(
        "--download-dir",
        default=None,
        help="where archives are downloaded and extracted (resumable)",
    )
    parser.add_argument(
        "--image-base-path",
        default=None,
        help="folder of the Places images (overrides the metadata's)",
    )
    parser.add_argument(
        "--audio-base-path", default=None, help="folder of the wavs (overrides the metadata's)"
    )


def plan_from_args(args: argparse.Namespace) -> list[WorkItem]:
    splits = args.split or ["train"]
    root = args.root
    if args.archive_url:
        if not args.download_dir:
            raise ValueError("--archive-url needs --download-dir")
        folders = fetch_all([Archive.parse(u) for u in args.archive_url], args.download_dir)
        root = root or find_root(folders, splits[0])
    if root is None:
        raise ValueError("give the PlacesAudio folder, or --archive-url with --download-dir")
    return plan(root, splits, args.image_base_path, args.audio_base_path, args.limit)
