"""The audioset and placesaudio sources on the toy world's raw layouts, through the command line
and the real Ray: AudioSet videos fetched by yt-dlp from http.server on 127.0.0.1, PlacesAudio
from its folder and from a downloaded archive; every sample checked against its source."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from ingest.cli import build_parser, main
from ingest.sources.audioset_csv import read_class_labels, read_segments
from ingest.sources.placesaudio_meta import read_metadata
from ingest.synthetic import ffmpeg_exe
from ingest.testing import local_ray, serve_directory
from shards import storage
from shards.format import CLIP_SAMPLES, SAMPLE_RATE, decode_sample
from shards.index import load_index

MISSING_YTID = "AAAAAAAAAAA"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ingest.toyworld",
            "--out",
            str(root),
            "--size",
            "tiny",
            "--videos",
            "2",
            "--min-video-seconds",
            "20",
            "--max-video-seconds",
            "23",
            "--speech-train",
            "8",
            "--speech-val",
            "3",
            "--workers",
            "1",
            "--quiet",
        ],
        check=True,
    )
    return root


@pytest.fixture(scope="module")
def ray_session():
    with local_ray():
        yield


def _samples(out: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for entry in load_index(out).shards:
        with storage.open_read(entry.url) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            raw: dict[str, dict] = {}
            for m in tar:
                key, field = m.name.split(".", 1)
                raw.setdefault(key, {"__key__": key})[field] = tar.extractfile(m).read()
        for key, sample in raw.items():
            assert key not in found
            found[key] = decode_sample(sample)
    return found


def _failures(out: str) -> dict[str, str]:
    summary = json.loads(storage.read_bytes(storage.join(out, "ingest_summary.json")))
    assert summary["failures"] == sum(summary["failures_by_reason"].values())
    failures = {}
    for name in storage.listdir(out):
        if name.endswith(".stats.json"):
            for f in json.loads(storage.read_bytes(storage.join(out, name)))["failures"]:
                failures[f["key"]] = f["reason"]
    return failures


def _ffmpeg_audio(path, start: float) -> np.ndarray:
    """10 s of 16 kHz mono from the ffmpeg command line: an independent reference."""
    cmd = [
        ffmpeg_exe(),
        "-v",
        "error",
        "-ss",
        str(start),
        "-t",
        "10",
        "-i",
        str(path),
        "-vn",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-f",
        "f32le",
        "-",
    ]
    return np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.float32)


@pytest.mark.parametrize("source", ["audioset", "placesaudio", "videos"])
def test_every_source_has_help(source, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([source, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--output" in text and "--ray-address" in text and "--retry-failed" in text


def test_audioset_over_http(world, ray_session, tmp_path):
    audioset = world / "audioset"
    csv = tmp_path / "segments.csv"
    text = (audioset / "toyworld_segments.csv").read_text()
    first = read_segments(audioset / "toyworld_segments.csv")[0]
    csv.write_text(
        text + f'{MISSING_YTID}, 0.000, 10.000, "/t/tw0001"\n'
        f'{first.ytid}, 100.000, 110.000, "/t/tw0001"\n'
    )
    segments = read_segments(csv)
    names = {
        c.mid: c.display_name for c in read_class_labels(audioset / "class_labels_indices.csv")
    }
    out = str(tmp_path / "out")
    with serve_directory(audioset / "videos") as base:
        code = main(
            [
                "audioset",
                str(csv),
                "--class-labels",
                str(audioset / "class_labels_indices.csv"),
                "--url-template",
                base + "/{YTID}.mp4",
                "-o",
                out,
                "--items-per-shard",
                "2",
                "--frames-per-clip",
                "2",
                "--no-progress",
            ]
        )
    assert code == 0
    samples = _samples(out)
    failures = _failures(out)
    assert failures.keys() == {f"{MISSING_YTID}_0", f"{first.ytid}_100000"}
    assert (
        failures[f"{MISSING_YTID}_0"].startswith("http_error:")
        and "404" in failures[f"{MISSING_YTID}_0"]
    )
    assert failures[f"{first.ytid}_100000"].startswith("window_out_of_range:")
    good = [s for s in segments if s.ytid != MISSING_YTID and s.start_seconds < 100]
    assert len(good) >= 4 and set(samples) == {
        f"{s.ytid}_{int(s.start_seconds * 1000)}" for s in good
    }
    for seg in good:
        s = samples[f"{seg.ytid}_{int(seg.start_seconds * 1000)}"]
        meta = s["meta"]
        assert s["audio"].shape == (CLIP_SAMPLES,) and meta["valid_samples"] == CLIP_SAMPLES
        assert meta["source"] == "audioset" and meta["id"] == seg.ytid
        assert meta["labels"] == list(seg.positive_labels)
        assert meta["label_names"] == [names[m] for m in seg.positive_labels]
        assert meta["clip_start"] == seg.start_seconds and meta["url"].endswith(f"/{seg.ytid}.mp4")
        assert len(s["frames"]) == 2 and all(f.shape == (128, 128, 3) for f in s["frames"])
        assert all(seg.start_seconds <= t < seg.end_seconds for t in meta["frame_times"])
        ref = _ffmpeg_audio(audioset / "videos" / f"{seg.ytid}.mp4", seg.start_seconds)
        n = min(ref.size, CLIP_SAMPLES)
        assert np.corrcoef(ref[:n], s["audio"][:n])[0, 1] > 0.98, seg


def _check_placesaudio(samples: dict[str, dict], metadata) -> None:
    utterances = {u.uttid: u for u in metadata}
    assert set(samples) == set(utterances)
    for uttid, s in samples.items():
        utt, meta = utterances[uttid], s["meta"]
        wav, rate = sf.read(utt.wav, dtype="float32")
        assert rate == SAMPLE_RATE
        valid = min(wav.size, CLIP_SAMPLES)
        assert meta["valid_samples"] == valid and s["audio"].shape == (CLIP_SAMPLES,)
        np.testing.assert_allclose(s["audio"][:valid], wav[:valid], atol=1e-4)
        assert not s["audio"][valid:].any()
        assert meta["caption"] == utt.asr_text and meta["speaker"] == utt.speaker
        assert meta["words"] == [
            {"word": w.word, "start": w.start, "end": w.end} for w in utt.words
        ]
        image = np.asarray(Image.open(utt.image).convert("RGB")).astype(int)
        assert len(s["frames"]) == 1 and s["frames"][0].shape == image.shape
        assert np.abs(s["frames"][0].astype(int) - image).mean() < 4


def test_placesaudio_from_its_folder(world, ray_session, tmp_path):
    out = str(tmp_path / "out")
    code = main(
        [
            "placesaudio",
            str(world / "placesaudio"),
            "--split",
            "train",
            "--split",
            "val",
            "-o",
            out,
            "--items-per-shard",
            "4",
            "--no-progress",
        ]
    )
    assert code == 0
    metadata = [
        *read_metadata(world / "placesaudio" / "metadata" / "train.json"),
        *read_metadata(world / "placesaudio" / "metadata" / "val.json"),
    ]
    _check_placesaudio(_samples(out), metadata)
    assert _failures(out) == {}


def test_placesaudio_from_a_downloaded_archive(world, ray_session, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "PlacesAudio_distro.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(world / "placesaudio", arcname="PlacesAudio_distro")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    out = str(tmp_path / "out")
    downloads = tmp_path / "downloads"
    with serve_directory(www) as base:
        args = [
            "placesaudio",
            "--archive-url",
            f"{base}/{archive.name}#sha256={digest}",
            "--download-dir",
            str(downloads),
            "--split",
            "val",
            "-o",
            out,
            "--no-progress",
        ]
        assert main(args) == 0
    extracted = downloads / "PlacesAudio_distro" / "PlacesAudio_distro"
    _check_placesaudio(_samples(out), read_metadata(extracted / "metadata" / "val.json"))
    assert (downloads / archive.name).read_bytes() == archive.read_bytes()
