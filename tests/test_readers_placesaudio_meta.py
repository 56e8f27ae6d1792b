"""PlacesAudio metadata reader: the distribution's JSON form, word alignments, base paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.sources.placesaudio_meta import (
    PlacesAudioMetaError,
    WordSpan,
    parse_metadata,
    parse_text_alignment,
    read_metadata,
)

ENTRY = {
    "uttid": "A1IFIK8J49WBER-GSUN_0A20C5E4E68D9A7AAD6B2F3D1A3F7A45",
    "speaker": "A1IFIK8J49WBER",
    "asr_text": "a white building",
    "wav": "wavs/112/utterance_268706.wav",
    "image": "b/building_facade/gsun_0a20c5e4.jpg",
}


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "metadata" / "train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_reads_entries_and_resolves_relative_bases(tmp_path):
    aligned = dict(ENTRY, text_alignment="0.370__a__0.460 0.460__white__0.880 0.900__building__1.5")
    path = _write(
        tmp_path,
        {"image_base_path": "../images", "audio_base_path": "..", "data": [ENTRY, aligned]},
    )
    plain, with_words = read_metadata(path)
    assert plain.words is None
    assert plain.wav == str(tmp_path / "wavs/112/utterance_268706.wav")
    assert plain.image == str(tmp_path / "images/b/building_facade/gsun_0a20c5e4.jpg")
    assert with_words.words == (
        WordSpan("a", 0.37, 0.46),
        WordSpan("white", 0.46, 0.88),
        WordSpan("building", 0.9, 1.5),
    )


def test_base_path_overrides_and_urls():
    doc = {
        "image_base_path": "/placeholder/images",
        "audio_base_path": "/placeholder",
        "data": [ENTRY],
    }
    (u,) = parse_metadata(
        doc,
        image_base_path="s3://bucket/places205",
        audio_base_path="/data/PlacesAudio_400k_distro",
    )
    assert u.image == "s3://bucket/places205/b/building_facade/gsun_0a20c5e4.jpg"
    assert u.wav == "/data/PlacesAudio_400k_distro/wavs/112/utterance_268706.wav"


@pytest.mark.parametrize(
    "entry, message",
    [
        ({k: v for k, v in ENTRY.items() if k != "wav"}, r"data\[1\]: field 'wav' missing"),
        (dict(ENTRY, speaker=7), r"data\[1\]: field 'speaker'"),
        (dict(ENTRY, text_alignment="0.1__a"), r"data\[1\] .*text_alignment.*'0.1__a'"),
        (dict(ENTRY, text_alignment="0.5__a__0.1"), r"data\[1\] .*ends before it starts"),
    ],
)
def test_bad_entries_name_file_entry_and_field(tmp_path, entry, message):
    path = _write(
        tmp_path, {"image_base_path": "/i", "audio_base_path": "/a", "data": [ENTRY, entry]}
    )
    with pytest.raises(PlacesAudioMetaError, match=rf"train\.json: {message}"):
        read_metadata(path)


def test_bad_documents_are_reported(tmp_path):
    path = _write(tmp_path, {"data": [ENTRY]})
    with pytest.raises(PlacesAudioMetaError, match="missing 'image_base_path'"):
        read_metadata(path)
    path.write_text("{not json")
    with pytest.raises(PlacesAudioMetaError, match=r"train\.json:1: invalid JSON"):
        read_metadata(path)
    with pytest.raises(PlacesAudioMetaError, match="'data' list"):
        parse_metadata({"image_base_path": "/i", "audio_base_path": "/a"})


def test_alignment_parser_keeps_special_tokens():
    assert parse_text_alignment("0.0__<SIL>__0.3 0.3__dog__0.7") == (
        WordSpan("<SIL>", 0.0, 0.3),
        WordSpan("dog", 0.3, 0.7),
    )
    assert parse_text_alignment("") == ()
