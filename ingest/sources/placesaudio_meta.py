"""Reader of the PlacesAudio distribution's metadata (``metadata/{train,val}.json``).

The files look like::

    {"image_base_path": "...", "audio_base_path": "...",
     "data": [{"uttid": "...", "speaker": "...", "asr_text": "a large white building ...",
               "wav": "wavs/112/utterance_268706.wav", "image": "a/abbey/gsun_....jpg",
               "text_alignment": "0.370__a__0.460 0.460__large__0.880 ..."}, ...]}

``wav`` and ``image`` are relative to the two base paths. ``text_alignment`` (present in the
versions with word alignments) lists ``start__word__end`` tokens in seconds. Relative base paths
are taken relative to the folder of the JSON file; callers may override either base path (the
distribution's own values are placeholders for the user's install locations).
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

REQUIRED_FIELDS = ("uttid", "speaker", "asr_text", "wav", "image")


class PlacesAudioMetaError(ValueError):
    """The metadata is malformed; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class WordSpan:
    """A word of a caption and its time span in seconds."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """One spoken caption: ids, transcript, resolved WAV and image locations, and the word
    alignment if the metadata has one (else None)."""

    uttid: str
    speaker: str
    asr_text: str
    wav: str
    image: str
    words: tuple[WordSpan, ...] | None


def parse_text_alignment(text: str, where: str = "<alignment>") -> tuple[WordSpan, ...]:
    """Parse ``"start__word__end start__word__end ..."`` into word spans.

    Raises:
        PlacesAudioMetaError: naming ``where`` and the bad token, for a token without three
            parts, non-numeric times, or end < start.
    """
    spans = []
    for token in text.split():
        parts = token.split("__")
        if len(parts) != 3:
            raise PlacesAudioMetaError(
                f"{where}: alignment token {token!r} is not start__word__end"
            )
        try:
            start, end = float(parts[0]), float(parts[2])
        except ValueError:
            raise PlacesAudioMetaError(
                f"{where}: alignment token {token!r} has non-numeric times"
            ) from None
        if end < start or start < 0:
            raise PlacesAudioMetaError(f"{where}: alignment token {token!r} ends before it starts")
        spans.append(WordSpan(parts[1], start, end))
    return tuple(spans)


def _join(base: str, rel: str) -> str:
    if "://" in base:
        return posixpath.join(base, rel)
    return str(Path(base) / rel)


def _resolve_base(value: str, json_dir: Path | None) -> str:
    if "://" in value or json_dir is None or os.path.isabs(value):
        return value
    return os.path.normpath(json_dir / value)


def parse_metadata(
    doc: dict,
    source: str = "<metadata>",
    json_dir: Path | None = None,
    image_base_path: str | None = None,
    audio_base_path: str | None = None,
) -> list[Utterance]:
    """Turn a loaded metadata document into utterances with resolved paths.

    Args:
        doc: the parsed JSON object.
        source: name for error messages (the file's path or URL).
        json_dir: folder of the JSON file; relative base paths are resolved against it.
        image_base_path, audio_base_path: override the document's base paths.

    Raises:
        PlacesAudioMetaError: naming ``source``, the entry index and the field at fault.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise PlacesAudioMetaError(f"{source}: expected an object with a 'data' list")
    bases = {}
    for key, override in (
        ("image_base_path", image_base_path),
        ("audio_base_path", audio_base_path),
    ):
        value = override if override is not None else doc.get(key)
        if not isinstance(value, str) or not value:
            raise PlacesAudioMetaError(f"{source}: missing '{key}' (or pass it explicitly)")
        bases[key] = _resolve_base(value, json_dir) if override is None else value
    out = []
    for i, entry in enumerate(doc["data"]):
        where = f"{source}: data[{i}]"
        if not isinstance(entry, dict):
            raise PlacesAudioMetaError(f"{where}: expected an object")
        for field in REQUIRED_FIELDS:
            if not isinstance(entry.get(field), str):
                raise PlacesAudioMetaError(f"{where}: field '{field}' missing or not a string")
        words = None
        if "text_alignment" in entry:
            if not isinstance(entry["text_alignment"], str):
                raise PlacesAudioMetaError(f"{where}: field 'text_alignment' is not a string")
            words = parse_text_alignment(
                entry["text_alignment"], f"{where} ({entry['uttid']}) field 'text_alignment'"
            )
        out.append(
            Utterance(
                entry["uttid"],
                entry["speaker"],
                entry["asr_text"],
                _join(bases["audio_base_path"], entry["wav"]),
                _join(bases["image_base_path"], entry["image"]),
                words,
            )
        )
    return out


def read_metadata(
    path: str | os.PathLike, image_base_path: str | None = None, audio_base_path: str | None = None
) -> list[Utterance]:
    """Read ``metadata/{split}.json`` (see :func:`parse_metadata`)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PlacesAudioMetaError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    return parse_metadata(doc, str(path), path.parent, image_base_path, audio_base_path)
