"""Real synthesised speech with exact word times, from libespeak-ng (PyPI ``espeakng-loader``).

A caption is composed from separately synthesised words (each trimmed of its silence and cached
per speaker), joined by short random pauses, so every word's start and end in the caption are
known to the sample. espeak-ng renders at 22,050 Hz; words are resampled to 16 kHz.

libespeak-ng keeps global state, and a word's samples depend slightly on what the engine said
before. So each process owns one :class:`Espeak` (see :func:`engine`) that synthesises the whole
vocabulary for every speaker once, in a fixed order, when it starts; every later request is a
cache hit, and every process holds the same samples. Words added to the vocabulary later are
synthesised after all earlier ones, so they leave the earlier words' samples unchanged. Only
voices whose output is deterministic are used: the breathy female variants (``+f2``, ``+f3``,
``+f5``) draw random noise.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ingest.toyworld.sounds import NOISE_FLOOR, SAMPLE_RATE, with_noise_floor

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3


@dataclass(frozen=True)
class Speaker:
    """An espeak-ng voice with a speaking rate (words per minute) and base pitch (0-100)."""

    voice: str
    rate: int
    pitch: int

    @property
    def speaker_id(self) -> str:
        """A stable speaker id for metadata, e.g. ``en-us_r150_p50``."""
        return f"{self.voice.replace('+', '-')}_r{self.rate}_p{self.pitch}"


SPEAKERS: tuple[Speaker, ...] = (
    Speaker("en-us", 150, 50),
    Speaker("en-us", 175, 75),
    Speaker("en", 160, 45),
    Speaker("en+m3", 145, 55),
    Speaker("en-029", 165, 60),
    Speaker("en-us+m7", 155, 40),
    Speaker("en+klatt", 150, 65),
    Speaker("en-us+f4", 160, 80),
    Speaker("en-gb-x-rp", 170, 50),
)


@dataclass(frozen=True)
class WordTime:
    """A word of a caption and its span in seconds."""

    word: str
    start: float
    end: float


class Espeak:
    """A libespeak-ng engine in synchronous mode that returns 16 kHz float32 audio."""

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        self._callback = callback_type(self._collect)  # keep a reference: C holds the pointer
        data = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (data path {data.decode()})")
        self.native_rate = int(rate)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._speaker: Speaker | None = None
        self._cache: dict[tuple[Speaker, str], np.ndarray] = {}
        self.frozen = False  # once frozen, words outside the cache are refused

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def _use(self, speaker: Speaker) -> None:
        if speaker == self._speaker:
            return
        if self._lib.espeak_SetVoiceByName(speaker.voice.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {speaker.voice!r}")
        self._lib.espeak_SetParameter(_PARAM_RATE, speaker.rate, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, speaker.pitch, 0)
        self._speaker = speaker

    def word(self, word: str, speaker: Speaker) -> np.ndarray:
        """One spoken word, silence trimmed, float32 (N,) at 16 kHz (cached)."""
        key = (speaker, word)
        if key not in self._cache:
            if self.frozen:
                raise KeyError(
                    f"{word!r} ({speaker.speaker_id}) is not in the toy-world "
                    "vocabulary; add it to ingest.toyworld.scene.vocabulary()"
                )
            self._use(speaker)
            self._chunks.clear()
            text = word.encode()
            self._lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
            self._lib.espeak_Synchronize()
            if not self._chunks:
                raise RuntimeError(f"espeak-ng produced no audio for {word!r} ({speaker})")
            raw = np.concatenate(self._chunks).astype(np.float64) / 32768.0
            audio = _resample(raw, self.native_rate, SAMPLE_RATE)
            self._cache[key] = _trim(audio).astype(np.float32)
        return self._cache[key]


def _resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling by truncating (or zero-padding) the spectrum. For a word
    that starts and ends in silence (as espeak's output does) the circular spectrum adds no
    wrap-around artefacts."""
    n_out = round(len(x) * rate_out / rate_in)
    spec = np.fft.rfft(x)[: n_out // 2 + 1]
    return np.fft.irfft(spec, n=n_out) * (n_out / len(x))


def _trim(x: np.ndarray, rel_threshold: float = 0.02, margin: float = 0.005) -> np.ndarray:
    loud = np.nonzero(np.abs(x) > rel_threshold * np.abs(x).max())[0]
    pad = int(margin * SAMPLE_RATE)
    return x[max(loud[0] - pad, 0) : loud[-1] + pad + 1]


_ENGINE: Espeak | None = None


def engine() -> Espeak:
    """This process's espeak-ng engine, created on first use with the toy world's whole
    vocabulary synthesised for every speaker in a fixed order."""
    global _ENGINE
    if _ENGINE is None:
        from ingest.toyworld.scene import vocabulary_releases

        eng = Espeak()
        for release in vocabulary_releases():  # new words after old: old words keep their audio
            for speaker in SPEAKERS:
                for word in release:
                    eng.word(word, speaker)
        eng.frozen = True
        _ENGINE = eng
    return _ENGINE


def compose(
    words: list[str], speaker: Speaker, rng: np.random.Generator, noise: float = NOISE_FLOOR
) -> tuple[np.ndarray, list[WordTime]]:
    """Speak ``words`` as one caption: (audio float32 (N,) at 16 kHz, word spans in seconds).

    Random leading silence (0.15-0.5 s), pauses between words (20-120 ms), trailing silence
    (0.2-0.5 s), loudness, and a faint noise floor; word spans are exact by construction.
    """
    eng = engine()
    pieces: list[np.ndarray] = [np.zeros(int(rng.uniform(0.15, 0.5) * SAMPLE_RATE), np.float32)]
    times: list[WordTime] = []
    cursor = len(pieces[0])
    for i, w in enumerate(words):
        if i > 0:
            gap = np.zeros(int(rng.uniform(0.02, 0.12) * SAMPLE_RATE), np.float32)
            pieces.append(gap)
            cursor += len(gap)
        audio = eng.word(w, speaker)
        times.append(WordTime(w, cursor / SAMPLE_RATE, (cursor + len(audio)) / SAMPLE_RATE))
        pieces.append(audio)
        cursor += len(audio)
    pieces.append(np.zeros(int(rng.uniform(0.2, 0.5) * SAMPLE_RATE), np.float32))
    out = np.concatenate(pieces)
    out *= 0.7 * rng.uniform(0.6, 1.0) / max(float(np.abs(out).max()), 1e-6)
    return with_noise_floor(out, rng, noise), times
