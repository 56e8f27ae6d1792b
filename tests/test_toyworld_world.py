"""The toy world generator: layouts parse with the project's readers, ground truth is exact,
MP4s decode, and generation is deterministic per seed."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from evaluation.datasets import load_prompted_set, read_ade_seg, read_image
from ingest.sources.audioset_csv import read_class_labels, read_segments
from ingest.sources.placesaudio_meta import read_metadata
from ingest.toyworld import generate_world, preset, video_url_template
from ingest.toyworld.__main__ import main
from ingest.toyworld.audioset import make_video
from ingest.toyworld.preview import preview
from ingest.toyworld.sounds import NOISE_FLOOR

TINY = {
    "speech_train": 8,
    "speech_val": 3,
    "videos": 2,
    "eval_videos": 1,
    "retrieval_videos": 4,
    "eval_per_class": 1,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toyworld") / "w"
    generate_world(preset("tiny", seed=3, **TINY), out, workers=2, size_name="tiny", progress=False)
    return out


def _manifest(world: Path) -> dict:
    return json.loads((world / "manifest.json").read_text())


def test_placesaudio_layout_parses(world):
    m = _manifest(world)
    for split, count in (("train", TINY["speech_train"]), ("val", TINY["speech_val"])):
        utts = read_metadata(world / m["paths"]["placesaudio_metadata"][split])
        assert len(utts) == count
        names = {c["name"] for c in m["classes"]}
        for u in utts:
            assert Path(u.wav).is_file() and Path(u.image).is_file()
            assert [w.word for w in u.words] == u.asr_text.split()
            assert any(w.word in names for w in u.words)
            info = sf.info(u.wav)
            assert info.samplerate == 16000 and info.channels == 1
            assert u.words[-1].end <= info.duration
            assert read_image(u.image).shape == (128, 128, 3)


def test_audioset_layout_parses(world):
    m = _manifest(world)
    classes = read_class_labels(world / m["paths"]["audioset_class_labels_csv"])
    assert [c.mid for c in classes] == [c["mid"] for c in m["classes"]]
    mids = [c.mid for c in classes]
    train = read_segments(world / m["paths"]["audioset_segments_csv"], mids)
    held_out = read_segments(world / m["paths"]["audioset_eval_segments_csv"], mids)
    assert len(train) == m["counts"]["audioset_segments"] > 0
    assert len(held_out) == m["counts"]["audioset_eval_segments"] > 0
    assert {s.ytid for s in train}.isdisjoint(s.ytid for s in held_out)
    template = video_url_template(world)
    assert template.startswith("file://") and "{YTID}" in template
    for s in train + held_out:
        assert s.duration == 10.0
        assert (world / m["paths"]["audioset_video_template"].format(YTID=s.ytid)).is_file()


def _videos(world: Path, split: str) -> list[dict]:
    return [
        v for v in json.loads((world / "audioset" / "videos.json").read_text()) if v["split"] == split
    ]


def test_retrieval_videos_are_one_segment_of_still_objects_heard_in_turn(world):
    m = _manifest(world)
    mids = [c["mid"] for c in m["classes"]]
    segments = read_segments(world / m["paths"]["audioset_retrieval_segments_csv"], mids)
    videos = _videos(world, "retrieval")
    assert len(videos) == m["counts"]["audioset_retrieval_videos"] == TINY["retrieval_videos"]
    assert [s.ytid for s in segments] == [v["ytid"] for v in videos]
    others = {v["ytid"] for v in _videos(world, "train") + _videos(world, "eval")}
    assert others.isdisjoint(v["ytid"] for v in videos)
    for v in videos:
        assert v["duration"] == 10 and len(v["segments"]) == 1
        assert len(v["tracks"]) == 3 and len({t["class"] for t in v["tracks"]}) == 3
        assert all(t["start"] == 0 and t["end"] == 10 for t in v["tracks"])  # always on screen
        sounds = v["sounds"]
        assert sorted(s["class"] for s in sounds) == sorted(t["class"] for t in v["tracks"])
        for before, after in itertools.pairwise(sounds):
            assert before["end"] < after["start"]  # one at a time
        assert 0 < sounds[0]["start"] and sounds[-1]["end"] < 10
        for s in sounds:
            assert s["end"] - s["start"] > 2.0


def _ideal_scores(videos: list[dict], frame_time: float) -> np.ndarray:
    """(clip, frame) scores of a model that hears every sound and sees every object perfectly,
    under DenseAV's similarity: the share of the clip's time in which something it hears is on
    the frame (max over image positions, mean over time)."""
    times = np.arange(0.05, 10.0, 0.1)

    def on_screen(v: dict) -> set[str]:
        return {t["class"] for t in v["tracks"] if t["start"] <= frame_time < t["end"]}

    def heard(v: dict, t: float) -> set[str]:
        return {s["class"] for s in v["sounds"] if s["start"] <= t < s["end"]}

    return np.array([
        [np.mean([bool(heard(a, t) & on_screen(f)) for t in times]) for f in videos]
        for a in videos
    ])


def test_retrieval_clips_can_be_told_apart_where_overlapping_sounds_cannot(world, tmp_path):
    # The retrieval videos of one world (seed 3) hold different object triples: for an ideal
    # model each clip's own frame beats every other frame, and each frame's own clip every
    # other clip. The same test on 10 s videos with overlapping sounds (the training and
    # held-out kind) ties: one object sounding throughout makes any frame showing it as good.
    retrieval = _videos(world, "retrieval")
    assert len({frozenset(t["class"] for t in v["tracks"]) for v in retrieval}) == len(retrieval)
    scores = _ideal_scores(retrieval, 5.0)
    off = ~np.eye(len(retrieval), dtype=bool)
    assert (scores.diagonal()[:, None] > np.where(off, scores, -1)).all()
    assert (scores.diagonal()[None, :] > np.where(off, scores, -1)).all()
    cfg = preset("tiny", seed=3, min_video_seconds=10, max_video_seconds=10)
    overlapping = [make_video(cfg, tmp_path, i, "eval") for i in range(12)]
    scores = _ideal_scores(overlapping, 5.0)
    ties = (scores >= scores.diagonal()[:, None]) & ~np.eye(len(overlapping), dtype=bool)
    assert ties.any()


def test_segment_labels_are_the_visible_objects(world):
    videos = json.loads((world / "audioset" / "videos.json").read_text())
    mids = {c["name"]: c["mid"] for c in _manifest(world)["classes"]}
    for v in videos:
        for start, end, labels in v["segments"]:
            visible = {
                mids[t["class"]]
                for t in v["tracks"]
                if min(end, t["end"]) - max(start, t["start"]) >= 1.0
            }
            assert set(labels) == visible


def test_mp4s_decode_to_stated_duration_with_audio(world):
    m = _manifest(world)
    fps = m["media"]["video_fps"]
    for v in json.loads((world / "audioset" / "videos.json").read_text()):
        path = world / m["paths"]["audioset_video_template"].format(YTID=v["ytid"])
        with av.open(str(path)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.audio[0].codec_context.name == "aac"
            frames = sum(1 for _ in c.decode(video=0))
        with av.open(str(path)) as c:
            rate = c.streams.audio[0].rate
            samples = sum(f.samples for f in c.decode(audio=0))
        assert frames == v["duration"] * fps
        assert abs(samples / rate - v["duration"]) < 0.1


def test_mp4_audio_is_audible_throughout(world):
    m = _manifest(world)
    v = json.loads((world / "audioset" / "videos.json").read_text())[0]
    path = world / m["paths"]["audioset_video_template"].format(YTID=v["ytid"])
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        audio = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio=0)])
    # An object (and its sound) is on screen at every moment: every second carries sound.
    per_second = audio[: len(audio) // rate * rate].reshape(-1, rate)
    assert np.sqrt((per_second**2).mean(axis=1)).min() > 0.01


def test_word_timings_match_the_audio(world):
    m = _manifest(world)
    for u in read_metadata(world / m["paths"]["placesaudio_metadata"]["train"]):
        audio, sr = sf.read(u.wav, dtype="float32")
        inside = np.zeros(len(audio), bool)
        for w in u.words:
            a, b = int(w.start * sr), int(w.end * sr)
            inside[a:b] = True
            assert np.sqrt(np.mean(audio[a:b] ** 2)) > 0.02, (u.uttid, w)
        outside_rms = np.sqrt(np.mean(audio[~inside] ** 2))
        inside_rms = np.sqrt(np.mean(audio[inside] ** 2))
        assert inside_rms > 10 * outside_rms, u.uttid


def test_eval_sets_parse_and_masks_hold_the_prompted_class(world):
    m = _manifest(world)
    n_classes = len(m["classes"])
    for kind in ("speech", "sound"):
        s = load_prompted_set(world / m["paths"][f"eval_{kind}"])
        assert s.kind == kind and len(s) == n_classes
        assert s.class_ids() == list(range(1, n_classes + 1))
        for p in s.prompts:
            seg = read_ade_seg(p.seg_path)
            assert seg.shape == read_image(p.image_path).shape[:2]
            assert (seg == p.ade_class_id).mean() > 0.01
            assert set(np.unique(seg)) <= set(range(n_classes + 1))
            audio, sr = sf.read(p.audio_path, dtype="float32")
            assert sr == 16000
            if kind == "speech":
                start, end = p.timing
                assert p.class_name and end - start > 0.1
                word = audio[int(start * sr) : int(end * sr)]
                lead, tail = audio[: int(0.1 * sr)], audio[int(end * sr) + 160 :]
                for silence in (lead, tail):  # the object word is the last word
                    assert np.sqrt(np.mean(word**2)) > 10 * np.sqrt(np.mean(silence**2))
            else:
                assert p.timing is None and len(audio) == 10 * sr  # a training clip's length
                # Never digitally silent (the gaps between a sound's events included), as no training
                # recording is: every 10 ms window holds at least the world's noise floor.
                windows = audio[: len(audio) // 160 * 160].reshape(-1, 160)
                assert np.sqrt(np.mean(windows**2, axis=1)).min() > 0.5 * NOISE_FLOOR


def test_eval_scenes_are_held_out_from_training(world):
    m = _manifest(world)
    train = {
        Path(u.image).read_bytes()
        for u in read_metadata(world / m["paths"]["placesaudio_metadata"]["train"])
    }
    for kind in ("speech", "sound"):
        for p in load_prompted_set(world / m["paths"][f"eval_{kind}"]).prompts:
            assert p.image_path.read_bytes() not in train


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_is_byte_identical_regardless_of_workers(world, tmp_path):
    again = tmp_path / "again"
    generate_world(
        preset("tiny", seed=3, **TINY), again, workers=1, size_name="tiny", progress=False
    )
    a, b = _tree(world), _tree(again)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_different_seeds_give_different_worlds(world, tmp_path, capsys):
    other = tmp_path / "other"
    counts = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    main(
        ["--out", str(other), "--seed", "4", "--size", "tiny", "--workers", "1", "--quiet"] + counts
    )
    assert "manifest.json" in capsys.readouterr().out
    assert _manifest(other)["seed"] == 4
    a, b = _tree(world), _tree(other)
    images = [k for k in a if k.endswith((".jpg", ".mp4", "_seg.png"))]
    assert images and all(a[k] != b.get(k) for k in images)
    assert set(a.values()).isdisjoint(b[k] for k in b if k.endswith(".jpg"))


def test_refuses_to_overwrite_without_force(world):
    with pytest.raises(FileExistsError, match="--force"):
        generate_world(preset("tiny", seed=3, **TINY), world, workers=1, progress=False)


def test_preview_sheet_lists_the_audio(world, tmp_path):
    wavs = preview(world, tmp_path / "sheet.png", count=3)
    assert (tmp_path / "sheet.png").stat().st_size > 10_000
    assert len(wavs) == 6 and all(Path(w).is_file() for w in wavs)


NAMED, SOUNDING = ("ball", "box", "fish", "car"), ("star", "heart", "car", "phone")


@pytest.fixture(scope="module")
def split_world(tmp_path_factory) -> Path:
    """A world whose corpora cover different classes (one, car, in both)."""
    out = tmp_path_factory.mktemp("toyworld") / "split"
    cfg = preset("tiny", seed=5, speech_classes=NAMED, sound_classes=SOUNDING, **TINY)
    generate_world(cfg, out, workers=2, size_name="tiny", progress=False)
    return out


def test_split_world_names_and_sounds_only_its_corpus_classes(split_world):
    m = _manifest(split_world)
    ids = {c["name"]: c["ade_class_id"] for c in m["classes"]}
    assert [c["name"] for c in m["classes"] if c["named"]] == list(NAMED)
    assert sorted(c["name"] for c in m["classes"] if c["sounding"]) == sorted(SOUNDING)
    silent_words = set(ids) - set(NAMED)
    for split in ("train", "val"):
        for u in read_metadata(split_world / m["paths"]["placesaudio_metadata"][split]):
            words = set(u.asr_text.split())
            assert words & set(NAMED) and not words & silent_words, u.asr_text
    mids = [c["mid"] for c in m["classes"]]
    sounding_mids = {c["mid"] for c in m["classes"] if c["sounding"]}
    for key in ("audioset_segments_csv", "audioset_eval_segments_csv"):
        for s in read_segments(split_world / m["paths"][key], mids):
            assert s.positive_labels and set(s.positive_labels) <= sounding_mids, (key, s)
    for kind, names in (("speech", NAMED), ("sound", SOUNDING)):
        s = load_prompted_set(split_world / m["paths"][f"eval_{kind}"])
        wanted = sorted(ids[n] for n in names)
        assert len(s) == m["counts"][f"eval_{kind}_prompts"] == len(names)
        assert s.class_ids() == wanted
        for p in s.prompts:  # every object drawn in a prompt's scene is of the kind's classes
            assert set(np.unique(read_ade_seg(p.seg_path))) <= {0, *wanted}


def test_corpus_classes_must_be_known(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"sound_classes .* \(\['bear'\] unknown\)"):
        preset("tiny", sound_classes=("star", "bear", "car"))
    with pytest.raises(ValueError, match="at least 3"):
        preset("tiny", speech_classes=("ball", "ball", "box"))
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "w"), "--speech-classes", "ball", "unicorn", "box"])
    assert "['unicorn'] unknown" in capsys.readouterr().err
