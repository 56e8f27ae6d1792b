"""Toy-world drawing: masks cover exactly the drawn objects, ADE colour coding round-trips,
every class has a distinct look, sound and name, and captions name every object."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.path import Path as MplPath
from PIL import Image

from evaluation.datasets import decode_ade_seg, read_ade_seg
from ingest.toyworld.classes import CLASSES, RELEASES
from ingest.toyworld.media import encode_ade_seg, write_seg_png
from ingest.toyworld.render import paste, rasterize, sample_object
from ingest.toyworld.scene import caption, random_scene, vocabulary, vocabulary_releases
from ingest.toyworld.sounds import NOISE_FLOOR, SAMPLE_RATE, class_sound

GRAY = np.float32(100.0)


def _coverage(obj, size: int, k: int = 8) -> np.ndarray:
    """Fraction of each pixel inside the object, from k x k point-in-polygon tests
    (matplotlib's geometry, independent of the PIL rasteriser under test)."""
    c, s = np.cos(obj.rotation), np.sin(obj.rotation)
    flip = np.array([-1.0 if obj.mirror else 1.0, 1.0])
    offsets = (np.arange(k) + 0.5) / k
    yy, xx = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    sy, sx = np.broadcast_arrays(
        yy[..., None, None] + offsets[:, None], xx[..., None, None] + offsets[None, :]
    )
    points = np.stack([sx.reshape(-1), sy.reshape(-1)], axis=1)
    inside = np.zeros(len(points), bool)
    for part in obj.parts:
        if part.clip is None:
            poly = (part.polygon * flip) @ np.array([[c, -s], [s, c]]).T * obj.half_size
            inside |= MplPath(poly + np.asarray(obj.center)).contains_points(points)
    return inside.reshape(size, size, k * k).mean(axis=-1)


@pytest.mark.parametrize("cls", CLASSES, ids=[c.name for c in CLASSES])
def test_mask_is_exactly_the_drawn_object(cls):
    rng = np.random.default_rng(cls.ade_class_id)
    canvas = np.full((96, 96, 3), GRAY, np.float32)
    mask = np.zeros((96, 96), np.uint16)
    spec = sample_object(cls, rng, (48, 47), 30)
    paste(canvas, (mask,), (cls.ade_class_id,), rasterize(spec))
    truth = _coverage(spec, 96)
    obj = mask == cls.ade_class_id
    clear = np.abs(truth - 0.5) > 0.15  # pixels the two rasterisers cannot disagree on
    assert 0.1 < obj.mean() < 0.8
    assert np.array_equal(obj[clear], truth[clear] >= 0.5)
    changed = np.abs(canvas - GRAY).max(axis=-1) > 1.0
    assert not changed[truth == 0].any()
    assert changed[truth == 1].all()


def test_later_objects_occlude_earlier_ones_in_the_mask():
    rng = np.random.default_rng(0)
    canvas = np.zeros((64, 64, 3), np.float32)
    mask = np.zeros((64, 64), np.uint16)
    ball, box = CLASSES[0], CLASSES[2]
    paste(canvas, (mask,), (ball.ade_class_id,), rasterize(sample_object(ball, rng, (28, 32), 18)))
    paste(canvas, (mask,), (box.ade_class_id,), rasterize(sample_object(box, rng, (40, 32), 14)))
    assert mask[32, 40] == box.ade_class_id and mask[32, 14] == ball.ade_class_id


def test_ade_seg_png_round_trip(tmp_path):
    classes = np.array([[0, 1, 255], [256, 1000, 3000]], np.uint16)
    instances = np.array([[0, 1, 2], [3, 1, 2]], np.uint8)
    rgb = encode_ade_seg(classes, instances)
    assert tuple(rgb[1, 1]) == (30, 232, 1)  # 1000 = 3 * 256 + 232
    write_seg_png(tmp_path / "x_seg.png", classes, instances)
    assert np.array_equal(read_ade_seg(tmp_path / "x_seg.png"), classes)
    assert np.array_equal(decode_ade_seg(np.asarray(Image.open(tmp_path / "x_seg.png"))), classes)


def test_classes_are_distinct_in_look_name_and_sound():
    assert len(CLASSES) >= 8
    assert len({c.name for c in CLASSES}) == len({c.color for c in CLASSES}) == len(CLASSES)
    assert len({c.mid for c in CLASSES}) == len(CLASSES)
    assert [c.ade_class_id for c in CLASSES] == list(range(1, len(CLASSES) + 1))
    # Third-octave band energies of two seconds of sound: every fresh instance of a class is
    # nearest to a reference instance of the same class.
    edges = 50 * 2 ** (np.arange(25) / 3)
    freqs = np.fft.rfftfreq(512, 1 / SAMPLE_RATE)

    def bands(name: str, seed: int) -> np.ndarray:
        x = class_sound(name, 2 * SAMPLE_RATE, np.random.default_rng(seed))
        frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
        power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
        v = np.log(
            [
                power[(freqs >= lo) & (freqs < hi)].sum() + 1e-6
                for lo, hi in itertools.pairwise(edges)
            ]
        )
        return (v - v.mean()) / np.linalg.norm(v - v.mean())

    ref = np.stack([bands(c.name, 1) for c in CLASSES])
    for seed in (2, 3):
        probe = np.stack([bands(c.name, seed) for c in CLASSES])
        assert (np.argmax(probe @ ref.T, axis=1) == np.arange(len(CLASSES))).all()


def test_captions_name_every_object_once():
    rng = np.random.default_rng(0)
    vocab = set(vocabulary())
    for _ in range(50):
        scene = random_scene(rng, CLASSES, 64)
        objects = [o.cls for o in scene.objects]
        words, nouns = caption(rng, objects)
        assert set(words) <= vocab
        assert [words[i] for i in nouns] == [c.name for c in objects]
        assert sum(w in {c.name for c in CLASSES} for w in words) == len(objects)
        assert 1 <= len(objects) <= 3
        assert set(np.unique(scene.classes)) <= {0} | {c.ade_class_id for c in objects}


def _audio_digest_of_first_classes_words(whole_vocabulary: bool) -> str:
    """The md5 of every speaker's words of a world of the first 12 classes (the vocabulary before
    classes 13-20 were added), synthesised in a fresh process (libespeak-ng keeps process-wide
    state) by the engine, which knows the whole vocabulary, or by an engine that has said only
    those words, in sorted order, as the engine did before later classes were added."""
    code = f"""
import hashlib
from ingest.toyworld.classes import CLASSES
from ingest.toyworld.scene import vocabulary
from ingest.toyworld.speech import SPEAKERS, Espeak, engine
class_words = lambda classes: {{w for c in classes for w in (c.name, c.adjective)}}
words = sorted(
    set(vocabulary()) - class_words(CLASSES) | class_words(CLASSES[:12])
)
eng = engine() if {whole_vocabulary} else Espeak()
digest = hashlib.md5()
for speaker in SPEAKERS:
    for word in words:
        digest.update(eng.word(word, speaker).tobytes())
print(digest.hexdigest())
"""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_later_classes_leave_the_earlier_words_audio_unchanged():
    """espeak-ng's audio for a word depends on what it said before: the engine must say each
    release's words after all earlier releases, so a world of the first classes keeps its audio
    when classes are added."""
    assert RELEASES == tuple(sorted(RELEASES)) and RELEASES[-1] == len(CLASSES)
    first, *later = vocabulary_releases()
    assert set(first).isdisjoint(w for release in later for w in release)
    assert _audio_digest_of_first_classes_words(True) == _audio_digest_of_first_classes_words(False)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_every_sound_fills_most_of_its_recording(cls):
    # A class heard as the bare noise floor most of the time teaches its images to answer the
    # floor every recording has (a retrieval hub); the median 20 ms frame must stand above it.
    for seed in range(3):
        x = class_sound(cls.name, 10 * SAMPLE_RATE, np.random.default_rng(seed))
        frame_rms = np.sqrt((x.reshape(-1, SAMPLE_RATE // 50).astype(np.float64) ** 2).mean(axis=1))
        assert np.median(frame_rms) > 5 * NOISE_FLOOR, (cls.name, seed, np.median(frame_rms))
