"""Settings of a toy world and the named size presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ingest.toyworld.classes import ToyClass, select_classes


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a generated world (with the seed, the output is a pure
    function of this config).

    Counts: ``speech_train``/``speech_val`` PlacesAudio captions; ``videos`` training and
    ``eval_videos`` held-out AudioSet-style MP4s, each a whole number of ``segment_seconds``
    between ``min_video_seconds`` and ``max_video_seconds`` long and cut into segments of that
    length; ``retrieval_videos`` held-out one-segment MP4s for sound retrieval (their objects
    heard one after another; ``ingest.toyworld.audioset``); ``eval_per_class`` prompts per class
    in each prompted-segmentation set.
    ``object_scale`` is the range of an object's half-size as a fraction of ``image_size``.
    ``speech_classes``/``sound_classes`` name the classes each corpus covers (None: all of
    ``num_classes``): the captions name, the stills and the speech prompts' scenes show only
    speech classes; the videos, sound prompts and their scenes hold only sound classes. The
    paper's corpora overlap little: PlacesAudio captions name mostly silent things, AudioSet's
    sounds come from things seldom named.
    """

    seed: int = 0
    num_classes: int = 12
    speech_train: int = 2000
    speech_val: int = 200
    videos: int = 250
    eval_videos: int = 50
    retrieval_videos: int = 150
    min_video_seconds: int = 10
    max_video_seconds: int = 30
    eval_per_class: int = 30
    image_size: int = 128
    object_scale: tuple[float, float] = (0.14, 0.24)
    fps: int = 5
    segment_seconds: int = 10
    # A sound prompt fills a training sound clip, as the paper's VGGSound prompts (10 s clips) do:
    # 4 s of sound and 6 s of silence measured 0.304 sound mAP for the long preset, 10 s 0.678.
    sound_prompt_seconds: float = 10.0
    adjective_prob: float = 0.3
    speech_classes: tuple[str, ...] | None = None
    sound_classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for setting in ("speech_classes", "sound_classes"):  # a bad list fails here, not mid-world
            self._corpus_classes(setting, getattr(self, setting))

    @property
    def classes(self) -> tuple[ToyClass, ...]:
        """The classes in use."""
        return select_classes(self.num_classes)

    @property
    def named_classes(self) -> tuple[ToyClass, ...]:
        """The classes the speech corpus names and its stills show."""
        return self._corpus_classes("speech_classes", self.speech_classes)

    @property
    def sounding_classes(self) -> tuple[ToyClass, ...]:
        """The classes the sound corpus shows and makes heard."""
        return self._corpus_classes("sound_classes", self.sound_classes)

    def _corpus_classes(self, setting: str, names: tuple[str, ...] | None) -> tuple[ToyClass, ...]:
        if names is None:
            return self.classes
        known = {c.name: c for c in self.classes}
        unknown = [n for n in names if n not in known]
        if unknown or len(set(names)) < 3:  # a video or retrieval clip shows 3 classes at once
            raise ValueError(
                f"{setting} must name at least 3 distinct classes of {sorted(known)}; "
                f"got {list(names)}" + (f" ({unknown} unknown)" if unknown else "")
            )
        return tuple(c for c in self.classes if c.name in names)

    def rng(self, stream: str, index: int) -> np.random.Generator:
        """The random generator of item ``index`` of ``stream``: independent of every other
        item, of the worker that makes it and of the order of work; different seeds and
        different streams never share a generator."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, STREAMS[stream], index]))

    def to_dict(self) -> dict:
        """Plain-dict form (for the manifest)."""
        return asdict(self)


# Every stream draws from its own seed sequence, so the evaluation scenes are held out from
# (never equal to) the training scenes of the same world.
STREAMS = {
    "placesaudio_train": 1,
    "placesaudio_val": 2,
    "audioset": 3,
    "audioset_eval": 6,
    "eval_speech_order": 7,
    "eval_sound_order": 8,
    "eval_speech": 4,
    "eval_sound": 5,
    "audioset_retrieval": 9,
}

SIZES: dict[str, dict] = {
    "tiny": {
        "speech_train": 12,
        "speech_val": 4,
        "videos": 3,
        "eval_videos": 1,
        "retrieval_videos": 2,
        "min_video_seconds": 10,
        "max_video_seconds": 10,
        "eval_per_class": 1,
    },
    "small": {
        "speech_train": 300,
        "speech_val": 50,
        "videos": 30,
        "eval_videos": 10,
        "retrieval_videos": 30,
        "eval_per_class": 10,
    },
    "default": {},
    "large": {
        "speech_train": 8000,
        "speech_val": 500,
        "videos": 1000,
        "eval_videos": 100,
        "retrieval_videos": 300,
        "eval_per_class": 40,
    },
}


def preset(size: str, **overrides) -> WorldConfig:
    """The config of a named size ("tiny", "small", "default", "large") with overrides."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    base = WorldConfig(**SIZES[size])
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})
