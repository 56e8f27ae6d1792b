"""Held-out evaluation sets in the released DenseAV prompted-segmentation format.

    eval/speech/prompted_segmentation.csv   image_location, speech_prompt_file, ade_class_id,
                                            ade_class_name, timing, prompt_text
    eval/sound/prompted_segmentation.csv    image_location, vggsound_file, ade_class_id,
                                            ade_class_name
    eval/<set>/frames/<id>.jpg
    eval/<set>/audio/<id>.wav               16 kHz mono 16-bit PCM
    eval/<set>/annotations/<id>_seg.png     ADE20K colours: class = R / 10 * 256 + G

``timing`` is the JSON list ``[start, end]`` (seconds) of the object word in the speech prompt
"a picture of a(n) <object>". Sound prompts are ``sound_prompt_seconds`` of the object's sound
over the noise floor every recording of the world has.
A set prompts the classes its training corpus covers (``kind_classes``: all of them unless the
world names or sounds only some). Each block of that many consecutive rows prompts every such
class once, in a random order, so each has exactly ``eval_per_class`` prompts and a file's number
does not reveal its class.
Scenes come from their own seed streams, disjoint from the training scenes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ingest.toyworld.classes import ToyClass
from ingest.toyworld.config import WorldConfig
from ingest.toyworld.media import write_jpeg, write_seg_png, write_wav
from ingest.toyworld.scene import random_scene
from ingest.toyworld.sounds import SAMPLE_RATE, class_sound, fade, with_noise_floor
from ingest.toyworld.speech import SPEAKERS, compose

KINDS = ("speech", "sound")
COLUMNS = {
    "speech": [
        "image_location",
        "speech_prompt_file",
        "ade_class_id",
        "ade_class_name",
        "timing",
        "prompt_text",
    ],
    "sound": ["image_location", "vggsound_file", "ade_class_id", "ade_class_name"],
}


def kind_classes(cfg: WorldConfig, kind: str) -> tuple[ToyClass, ...]:
    """The classes the ``kind`` set prompts and draws: those its training corpus covers."""
    return cfg.named_classes if kind == "speech" else cfg.sounding_classes


def num_prompts(cfg: WorldConfig, kind: str) -> int:
    """The number of prompts of the ``kind`` set."""
    return cfg.eval_per_class * len(kind_classes(cfg, kind))


def prompted_class(cfg: WorldConfig, kind: str, index: int) -> ToyClass:
    """The class prompted in row ``index`` of the ``kind`` set (see the module docstring)."""
    classes = kind_classes(cfg, kind)
    block, slot = divmod(index, len(classes))
    order = cfg.rng(f"eval_{kind}_order", block).permutation(len(classes))
    return classes[int(order[slot])]


def make_prompt(cfg: WorldConfig, root: Path, kind: str, index: int) -> dict:
    """Write prompt ``index`` of the ``kind`` ("speech" or "sound") set under ``root`` (that
    set's folder) and return its CSV row."""
    if kind not in KINDS:
        raise ValueError(f"unknown evaluation set kind {kind!r}; expected one of {KINDS}")
    rng = cfg.rng(f"eval_{kind}", index)
    target = prompted_class(cfg, kind, index)
    scene = random_scene(rng, kind_classes(cfg, kind), cfg.image_size, target, cfg.object_scale)
    stem = f"toy_{kind}_{index:06d}"
    write_jpeg(root / "frames" / f"{stem}.jpg", scene.image)
    write_seg_png(root / "annotations" / f"{stem}_seg.png", scene.classes, scene.instances)
    row = {
        "image_location": f"{stem}.jpg",
        "ade_class_id": target.ade_class_id,
        "ade_class_name": target.name,
    }
    if kind == "speech":
        words = ["a", "picture", "of", target.article, target.name]
        speaker = SPEAKERS[int(rng.integers(0, len(SPEAKERS)))]
        audio, times = compose(words, speaker, rng)
        row["speech_prompt_file"] = f"audio/{stem}.wav"
        row["timing"] = json.dumps([round(times[-1].start, 3), round(times[-1].end, 3)])
        row["prompt_text"] = " ".join(words)
    else:
        n = int(cfg.sound_prompt_seconds * SAMPLE_RATE)
        audio = with_noise_floor(fade(class_sound(target.name, n, rng)), rng)
        row["vggsound_file"] = f"audio/{stem}.wav"
    write_wav(root / "audio" / f"{stem}.wav", audio, SAMPLE_RATE)
    return row


def write_csv(root: Path, kind: str, rows: list[dict]) -> Path:
    """Write ``prompted_segmentation.csv`` for one set; returns its path."""
    path = root / "prompted_segmentation.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS[kind], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path
