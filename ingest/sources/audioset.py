"""AudioSet segment lists; videos fetched with yt-dlp from a URL template.

Segment CSVs (`YTID, start_seconds, end_seconds, positive_labels`) and the ontology's
class-label CSV; each video is fetched once from a URL template (YouTube's by default; a local
server, a file:// URL or a folder path work too) and every segment of it is cut out as one
10 s clip keyed `{YTID}_{start in ms}`, with its labels (mids, indices and names) in the metadata.
"""

from __future__ import annotations

import argparse
import os
from collections import OrderedDict

from ingest.fetch import YOUTUBE_URL_TEMPLATE
from ingest.items import Window, WorkItem, check_unique_keys, safe_key
from ingest.sources.audioset_csv import OntologyClass, parse_class_labels, parse_segments, video_url
from shards import storage
from shards.format import CLIP_SECONDS

SOURCE = "audioset"


def segment_key(ytid: str, start_seconds: float) -> str:
    """`{YTID}_{start in milliseconds}`: stable and unique per segment."""
    return safe_key(f"{ytid}_{round(start_seconds * 1000):d}")


def plan(
    segment_csvs: list[str],
    url_template: str = YOUTUBE_URL_TEMPLATE,
    class_labels: str | None = None,
    limit: int | None = None,
) -> list[WorkItem]:
    """One work item per video (in first-seen order) holding all its segments as windows.

    `limit` keeps the first N videos. Labels are checked against `class_labels` when given.
    """
    if "://" not in url_template:
        url_template = os.path.abspath(url_template)  # a folder of videos named by YTID
    classes: dict[str, OntologyClass] = {}
    if class_labels is not None:
        lines = storage.read_bytes(class_labels).decode("utf-8").splitlines()
        classes = {c.mid: c for c in parse_class_labels(lines, class_labels)}
    videos: OrderedDict[str, WorkItem] = OrderedDict()
    for csv_url in segment_csvs:
        text = storage.read_bytes(csv_url).decode("utf-8")
        for seg in parse_segments(text.splitlines(), csv_url, known_mids=classes or None):
            item = videos.get(seg.ytid)
            if item is None:
                if limit is not None and len(videos) >= limit:
                    continue
                url = video_url(url_template, seg.ytid)
                item = WorkItem(
                    key=safe_key(seg.ytid),
                    source=SOURCE,
                    location=url,
                    windows=[],
                    meta={"id": seg.ytid, "url": url},
                )
                videos[seg.ytid] = item
            meta = {
                "labels": list(seg.positive_labels),
                "segment": [seg.start_seconds, seg.end_seconds],
            }
            if classes:
                meta["label_indices"] = [classes[m].index for m in seg.positive_labels]
                meta["label_names"] = [classes[m].display_name for m in seg.positive_labels]
            end = min(seg.end_seconds, seg.start_seconds + CLIP_SECONDS)
            key = segment_key(seg.ytid, seg.start_seconds)
            item.windows.append(Window(seg.start_seconds, end, key, meta))
    items = list(videos.values())
    if not items:
        raise ValueError(f"no segments in {segment_csvs}")
    check_unique_keys(items, ", ".join(segment_csvs))
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("segments", nargs="+", help="segment CSV file(s), local or s3://")
    parser.add_argument(
        "--class-labels",
        default=None,
        help="class_labels_indices.csv: check labels, add their names and indices",
    )
    parser.add_argument(
        "--url-template",
        default=YOUTUBE_URL_TEMPLATE,
        help="where a video is fetched from; {YTID} is replaced by its id "
        f"(default {YOUTUBE_URL_TEMPLATE}; e.g. /data/audioset/{{YTID}}.mp4)",
    )


def plan_from_args(args: argparse.Namespace) -> list[WorkItem]:
    return plan(args.segments, args.url_template, args.class_labels, args.limit)
