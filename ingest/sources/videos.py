"""Any video corpus given as a table (CSV, JSONL or Parquet) of URLs or paths.

Columns (names case-insensitive): the input in `url`, `path`, `video` or `location` (required);
optional `key`/`id` (else a key is derived from the location), `caption`, `label`/`labels`
(a list, or a string split on ';' or '|'), and `start`/`end` seconds to cut one window instead
of splitting the whole video into 10 s clips. Relative paths are taken from the table's folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
from typing import Any

from ingest.items import Window, WorkItem, check_unique_keys, hashed_key, safe_key
from shards import storage
from shards.format import CLIP_SECONDS

SOURCE = "videos"
LOCATION_COLUMNS = ("url", "path", "video", "location")


def read_table(table: str) -> list[dict[str, Any]]:
    """Rows of a CSV, JSONL or Parquet file (local or s3://) as dicts with lower-case keys."""
    data = storage.read_bytes(table)
    name = table.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    elif name.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{table}:{number}: not a JSON object per line ({e})") from e
    elif name.endswith((".csv", ".tsv")):
        dialect = "excel-tab" if name.endswith(".tsv") else "excel"
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")), dialect=dialect))
    else:
        raise ValueError(f"{table}: the table must end in .csv, .tsv, .jsonl or .parquet")
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{table}: row {number} is not an object")  # noqa: TRY004 -- bad input, like every table error here
    return [{str(k).strip().lower(): v for k, v in row.items()} for row in rows]


def _labels(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [part.strip() for part in re.split(r"[;|]", str(value)) if part.strip()]


def _resolve(location: str, table: str) -> str:
    if "://" in location or os.path.isabs(location) or storage.is_s3(table) or "://" in table:
        return location
    return os.path.join(os.path.dirname(os.path.abspath(table)), location)


def plan(table: str, limit: int | None = None) -> list[WorkItem]:
    """Work items for the rows of `table`, in table order (the first `limit` rows if given)."""
    rows = read_table(table)
    if not rows:
        raise ValueError(f"{table} holds no rows")
    column = next((c for c in LOCATION_COLUMNS if c in rows[0]), None)
    if column is None:
        raise ValueError(
            f"{table} needs one of the columns {LOCATION_COLUMNS}; it has {sorted(rows[0])}"
        )
    items = []
    for number, row in enumerate(rows[:limit] if limit else rows, 1):
        location = str(row.get(column) or "").strip()
        if not location:
            raise ValueError(f"{table}: row {number} has an empty {column!r}")
        given = row.get("key") or row.get("id")
        key = safe_key(str(given)) if given not in (None, "") else hashed_key(location)
        meta: dict[str, Any] = {
            "id": str(given) if given not in (None, "") else key,
            "url": location,
        }
        if row.get("caption"):
            meta["caption"] = str(row["caption"])
        labels = _labels(row.get("labels", row.get("label")))
        if labels:
            meta["labels"] = labels
        windows = None
        if row.get("start") not in (None, "") or row.get("end") not in (None, ""):
            start = float(row.get("start") or 0.0)
            end = float(row["end"]) if row.get("end") not in (None, "") else start + CLIP_SECONDS
            if not end > start >= 0:
                raise ValueError(f"{table}: row {number} has start {start} and end {end}")
            windows = [Window(start, min(end, start + CLIP_SECONDS), key)]
        items.append(
            WorkItem(
                key=key,
                source=SOURCE,
                location=_resolve(location, table),
                windows=windows,
                meta=meta,
            )
        )
    check_unique_keys(items, table)
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="CSV, TSV, JSONL or Parquet table of videos (local or s3://)")


def plan_from_args(args: argparse.Namespace) -> list[WorkItem]:
    return plan(args.table, limit=args.limit)
