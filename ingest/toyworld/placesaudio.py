"""The speech corpus in the PlacesAudio distribution's layout.

    placesaudio/metadata/{train,val}.json   {"image_base_path", "audio_base_path", "data": [...]}
    placesaudio/images/<split>/<bucket>/<uttid>.jpg
    placesaudio/wavs/<split>/<bucket>/<uttid>.wav     (16 kHz mono 16-bit PCM)

Each ``data`` entry has the distribution's fields ``uttid``, ``speaker``, ``asr_text``, ``wav``,
``image`` (paths relative to the base paths, which are relative to the metadata folder) and the
word alignment ``text_alignment`` in the form used with PlacesAudio alignments:
``"start__word__end start__word__end ..."`` (seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest.toyworld.config import WorldConfig
from ingest.toyworld.media import write_jpeg, write_wav
from ingest.toyworld.scene import caption, random_scene
from ingest.toyworld.speech import SAMPLE_RATE, SPEAKERS, compose

SPLITS = ("train", "val")


def make_caption(cfg: WorldConfig, root: Path, split: str, index: int) -> dict:
    """Render scene ``index`` of ``split``, speak its caption, write the JPEG and WAV under
    ``root`` (the ``placesaudio`` folder) and return its metadata entry."""
    rng = cfg.rng(f"placesaudio_{split}", index)
    scene = random_scene(rng, cfg.named_classes, cfg.image_size, scale=cfg.object_scale)
    words, _ = caption(rng, [o.cls for o in scene.objects], cfg.adjective_prob)
    speaker = SPEAKERS[int(rng.integers(0, len(SPEAKERS)))]
    audio, times = compose(words, speaker, rng)
    uttid = f"{split}_{index:06d}"
    bucket = f"{index // 1000:03d}"
    image_rel = f"images/{split}/{bucket}/{uttid}.jpg"
    wav_rel = f"wavs/{split}/{bucket}/{uttid}.wav"
    write_jpeg(root / image_rel, scene.image)
    write_wav(root / wav_rel, audio, SAMPLE_RATE)
    return {
        "uttid": uttid,
        "speaker": speaker.speaker_id,
        "asr_text": " ".join(words),
        "wav": wav_rel,
        "image": image_rel,
        "text_alignment": " ".join(f"{t.start:.3f}__{t.word}__{t.end:.3f}" for t in times),
    }


def write_metadata(root: Path, split: str, entries: list[dict]) -> Path:
    """Write ``metadata/{split}.json``; returns its path."""
    path = root / "metadata" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"image_base_path": "..", "audio_base_path": "..", "data": entries}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
