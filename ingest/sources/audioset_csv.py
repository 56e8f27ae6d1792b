"""Reader of AudioSet's segment lists and ontology class labels.

Segment CSVs (``balanced_train_segments.csv``, ``eval_segments.csv``, ...) start with three
comment lines beginning with ``#`` and then hold one segment per line::

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"

The class-label CSV (``class_labels_indices.csv``) is ``index,mid,display_name`` with a header.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_YTID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class AudioSetCSVError(ValueError):
    """A segment or class-label CSV is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Segment:
    """One labelled clip of a YouTube video: [start_seconds, end_seconds) and its label mids."""

    ytid: str
    start_seconds: float
    end_seconds: float
    positive_labels: tuple[str, ...]

    @property
    def duration(self) -> float:
        """Length of the segment in seconds."""
        return self.end_seconds - self.start_seconds


@dataclass(frozen=True)
class OntologyClass:
    """One row of ``class_labels_indices.csv``."""

    index: int
    mid: str
    display_name: str


def parse_segments(
    lines: Iterable[str], source: str = "<segments>", known_mids: Iterable[str] | None = None
) -> Iterator[Segment]:
    """Parse segment-CSV text lines (comments and blank lines skipped).

    Args:
        lines: the file's lines (e.g. an open text file, or ``text.splitlines()``).
        source: the name used in error messages (a path or URL).
        known_mids: if given, every label must be one of these mids.

    Raises:
        AudioSetCSVError: naming ``source`` and the 1-based line number.
    """
    known = set(known_mids) if known_mids is not None else None
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        try:
            fields = next(csv.reader([text], skipinitialspace=True))
        except csv.Error as err:
            raise AudioSetCSVError(f"{where}: not CSV ({err}): {text!r}") from None
        if len(fields) != 4:
            raise AudioSetCSVError(
                f"{where}: expected 4 fields (YTID, start_seconds, "
                f"end_seconds, positive_labels), got {len(fields)}: {text!r}"
            )
        ytid, start, end, labels = (f.strip() for f in fields)
        if not ytid or not set(ytid) <= _YTID_CHARS:
            raise AudioSetCSVError(f"{where}: bad YTID {ytid!r}")
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            raise AudioSetCSVError(
                f"{where}: start/end seconds are not numbers: {start!r}, {end!r}"
            ) from None
        if not 0 <= start_s < end_s:
            raise AudioSetCSVError(
                f"{where}: need 0 <= start_seconds < end_seconds, got {start_s}, {end_s}"
            )
        mids = tuple(m.strip() for m in labels.split(",") if m.strip())
        if not mids or not all(m.startswith("/") for m in mids):
            raise AudioSetCSVError(
                f"{where}: positive_labels must be label ids like '/m/09x0r', got {labels!r}"
            )
        if known is not None:
            unknown = [m for m in mids if m not in known]
            if unknown:
                raise AudioSetCSVError(f"{where}: labels not in the ontology: {unknown}")
        yield Segment(ytid, start_s, end_s, mids)


def read_segments(
    path: str | os.PathLike, known_mids: Iterable[str] | None = None
) -> list[Segment]:
    """Read a segment CSV file (see :func:`parse_segments`)."""
    with open(path, encoding="utf-8") as f:
        return list(parse_segments(f, str(path), known_mids))


def parse_class_labels(lines: Iterable[str], source: str = "<class labels>") -> list[OntologyClass]:
    """Parse ``class_labels_indices.csv`` text lines (header ``index,mid,display_name``).

    Raises:
        AudioSetCSVError: naming ``source`` and the 1-based line number, for a wrong header,
            a malformed row, a non-integer or repeated index, or a repeated mid.
    """
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise AudioSetCSVError(f"{source}: empty file") from None
    if header != ["index", "mid", "display_name"]:
        raise AudioSetCSVError(f"{source}:1: header must be index,mid,display_name, got {header}")
    classes: list[OntologyClass] = []
    seen_index: set[int] = set()
    seen_mid: set[str] = set()
    for row in reader:
        where = f"{source}:{reader.line_num}"
        if not row:
            continue
        if len(row) != 3:
            raise AudioSetCSVError(f"{where}: expected 3 fields, got {len(row)}: {row}")
        try:
            index = int(row[0])
        except ValueError:
            raise AudioSetCSVError(f"{where}: index is not an integer: {row[0]!r}") from None
        mid, name = row[1].strip(), row[2].strip()
        if not mid.startswith("/"):
            raise AudioSetCSVError(f"{where}: bad mid {mid!r}")
        if index in seen_index or mid in seen_mid:
            raise AudioSetCSVError(f"{where}: repeated index {index} or mid {mid!r}")
        seen_index.add(index)
        seen_mid.add(mid)
        classes.append(OntologyClass(index, mid, name))
    return classes


def read_class_labels(path: str | os.PathLike) -> list[OntologyClass]:
    """Read ``class_labels_indices.csv`` (see :func:`parse_class_labels`)."""
    with open(path, encoding="utf-8", newline="") as f:
        return parse_class_labels(f, str(path))


def mid_to_index(classes: Iterable[OntologyClass]) -> dict[str, int]:
    """Map label mids to their class indices."""
    return {c.mid: c.index for c in classes}


def video_url(template: str, ytid: str) -> str:
    """Fill a URL template such as ``https://www.youtube.com/watch?v={YTID}`` or
    ``http://127.0.0.1:8000/{YTID}.mp4`` with a video id."""
    if "{YTID}" not in template:
        raise ValueError(f"URL template {template!r} has no {{YTID}} placeholder")
    return template.replace("{YTID}", ytid)


def segment_files(root: str | os.PathLike) -> list[Path]:
    """The segment CSVs directly in ``root`` (files named ``*segments*.csv``), sorted."""
    return sorted(p for p in Path(root).glob("*segments*.csv") if p.is_file())
