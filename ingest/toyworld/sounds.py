"""Characteristic non-speech sounds of the toy-world classes (mono float32 at 16 kHz).

Each class has its own pattern of pitch, rhythm and timbre (see ``ToyClass.sound``); every
instance varies pitch, tempo, phase and loudness a little so that the sound must be recognised
by its kind, not matched sample for sample.

Every sound fills most of its recording: its median 20 ms frame stands well above the noise floor.
A class heard as the bare floor most of the time teaches its images to answer the floor, which
every recording has, and those images then outscore the right one for any sound (retrieval hubs).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 16000
TARGET_RMS = 0.08
# Standard deviation of the faint noise under every recording of the world (soundtracks,
# captions, prompts): no real recording is digitally silent, and a model trained only on
# recordings with a floor reads exact silence (between a sound's events, in a spliced gap) as
# something else.
NOISE_FLOOR = 0.002


def _t(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SAMPLE_RATE


def _band(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Band-limit ``x`` to [lo, hi] Hz with an FFT mask (zero-phase, deterministic)."""
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    spec[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(spec, n=len(x))


def _events(n: int, period: float, phase: float) -> np.ndarray:
    """Start sample indices of a periodic event train."""
    starts = np.arange(phase * period, n / SAMPLE_RATE, period)
    return (starts * SAMPLE_RATE).astype(int)


def _random_events(n: int, rng: np.random.Generator, rate: float) -> np.ndarray:
    """Sorted start sample indices of a Poisson event train of ``rate`` events per second."""
    return np.sort(rng.integers(0, n, size=rng.poisson(rate * n / SAMPLE_RATE)))


def _cycle_position(t: np.ndarray, cycle: float, rng: np.random.Generator) -> np.ndarray:
    """Each time's position in seconds within a repeating ``cycle`` of random phase."""
    return (t + rng.random() * cycle) % cycle


def _place(out: np.ndarray, start: int, grain: np.ndarray) -> None:
    end = min(len(out), start + len(grain))
    if start < end:
        out[start:end] += grain[: end - start]


def _figure(
    n: int, period: float, phase: float, parts: tuple[tuple[float, np.ndarray], ...]
) -> np.ndarray:
    """``n`` samples of a repeating figure: each ``(lag in seconds, grain)`` of ``parts`` placed
    at every start of a periodic event train."""
    out = np.zeros(n)
    for s in _events(n, period, phase):
        for lag, grain in parts:
            _place(out, s + int(lag * SAMPLE_RATE), grain)
    return out


def _ball(n, rng, pitch, tempo):
    t = _t(int(0.3 * SAMPLE_RATE))
    f = 520 * pitch * np.exp(-t * 3.5)
    grain = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.exp(-t * 10)
    return _figure(n, 0.34 / tempo, rng.random(), ((0.0, grain),))


def _star(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.3 * SAMPLE_RATE))
    notes = np.array([1047.0, 1319.0, 1568.0, 2093.0]) * pitch
    for i, s in enumerate(_events(n, 0.15 / tempo, rng.random())):
        f = notes[i % len(notes)]
        _place(
            out, s, (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)) * np.exp(-t * 14)
        )
    return out


def _box(n, rng, pitch, tempo):
    t = _t(int(0.3 * SAMPLE_RATE))
    body = np.sin(2 * np.pi * 330 * pitch * t) + 0.5 * np.sin(2 * np.pi * 910 * pitch * t)
    grain = body * np.exp(-t * 14) + 0.4 * rng.standard_normal(len(t)) * np.exp(-t * 200)
    return _figure(n, 0.8 / tempo, rng.random(), ((0.0, grain), (0.17, grain), (0.4, grain)))


def _heart(n, rng, pitch, tempo):
    t = _t(int(0.25 * SAMPLE_RATE))
    lub = np.sin(2 * np.pi * 55 * pitch * t) * np.sin(np.pi * t / t[-1])
    dub = 0.7 * np.sin(2 * np.pi * 75 * pitch * t) * np.sin(np.pi * t / t[-1])
    beats = _figure(n, 0.9 / tempo, rng.random(), ((0.0, lub), (0.3, dub)))
    return beats + 0.3 * _band(rng.standard_normal(n), 40, 250)


def _fish(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.07 * SAMPLE_RATE))
    for s in _random_events(n, rng, 18 * tempo):
        f0 = rng.uniform(350, 600) * pitch
        f = f0 * np.exp(t * 18)
        _place(out, s, np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.sin(np.pi * t / t[-1]))
    return out


def _tree(n, rng, pitch, tempo):
    noise = _band(rng.standard_normal(n), 150 * pitch, 600 * pitch)
    swell = 0.55 + 0.45 * np.sin(2 * np.pi * 0.35 * tempo * _t(n) + rng.uniform(0, 2 * np.pi))
    return noise * swell


def _car(n, rng, pitch, tempo):
    t = _t(n)
    f = 90 * pitch * (1 + 0.03 * np.sin(2 * np.pi * 0.3 * t))
    phase = np.cumsum(f) / SAMPLE_RATE
    saw = 2 * (phase - np.floor(phase + 0.5))
    firing = 0.6 + 0.4 * np.sin(2 * np.pi * 12 * tempo * t) ** 2
    return _band(saw * firing, 40, 1500)


def _bee(n, rng, pitch, tempo):
    t = _t(n)
    f = 230 * pitch * (1 + 0.04 * np.sin(2 * np.pi * 6 * tempo * t + rng.uniform(0, 6.3)))
    square = np.sign(np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE))
    return _band(square, 200, 3000)


def _cloud(n, rng, pitch, tempo):
    rumble = _band(rng.standard_normal(n), 20, 160 * pitch)
    env = np.zeros(n)
    t = _t(int(1.6 * SAMPLE_RATE))
    grain = (1 - np.exp(-t * 12)) * np.exp(-t * 2.2)
    for s in _events(n, 1.7 / tempo, rng.random()):
        _place(env, s, grain * rng.uniform(0.6, 1.0))
    return rumble * (0.15 + env)


def _clock(n, rng, pitch, tempo):
    out = 0.18 * _band(rng.standard_normal(n), 250, 500)
    t = _t(int(0.15 * SAMPLE_RATE))
    tick, tock = (
        (np.sin(2 * np.pi * f * pitch * t) + 0.5 * np.sin(2 * np.pi * 1.6 * f * pitch * t))
        * np.exp(-t * 35)
        for f in (3200.0, 2100.0)
    )
    for i, s in enumerate(_events(n, 0.5 / tempo, rng.random())):
        _place(out, s, tick if i % 2 == 0 else tock)
    return out


def _kite(n, rng, pitch, tempo):
    t = _t(n)
    f = 1200 * pitch + 300 * np.sin(2 * np.pi * 0.5 * tempo * t + rng.uniform(0, 6.3))
    tone = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE)
    return tone + 0.15 * _band(rng.standard_normal(n), 900, 1800)


def _phone(n, rng, pitch, tempo):
    t = _t(n)
    trill = np.where(np.sin(2 * np.pi * 20 * t) > 0, 1000.0, 1250.0) * pitch
    tone = np.sin(2 * np.pi * np.cumsum(trill) / SAMPLE_RATE)
    gate = _cycle_position(t, 1.5 / tempo, rng) < 1.0
    return tone * gate


def _moon(n, rng, pitch, tempo):
    t = _t(int(0.45 * SAMPLE_RATE))
    f = 330 * pitch * (1 - 0.12 * t / t[-1])
    hoot = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.sin(np.pi * t / t[-1])
    return _figure(n, 1.6 / tempo, rng.random(), ((0.0, hoot), (0.5, hoot), (0.85, hoot)))


def _drum(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.25 * SAMPLE_RATE))
    f = 160 * pitch * (1 + np.exp(-t * 30))
    hit = np.sin(2 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.exp(-t * 14)
    hit += 0.5 * _band(rng.standard_normal(len(t)), 1500, 5000) * np.exp(-t * 30)
    for i, s in enumerate(_events(n, 0.25 / tempo, rng.random())):
        if i % 4 != 3:  # three beats and a rest
            _place(out, s, hit)
    return out


def _boat(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.6 * SAMPLE_RATE))
    for s in _events(n, 0.75 / tempo, rng.random()):
        splash = _band(rng.standard_normal(len(t)), 2000 * pitch, 6500) * np.exp(-t * 5)
        _place(out, s + int(rng.uniform(0, 0.15) * SAMPLE_RATE), splash)
    return out


def _house(n, rng, pitch, tempo):
    t = _t(int(1.0 * SAMPLE_RATE))
    ding, dong = (
        (np.sin(2 * np.pi * f * pitch * t) + 0.3 * np.sin(2 * np.pi * 3 * f * pitch * t))
        * np.exp(-t * 3)
        for f in (659.0, 523.0)
    )
    return _figure(n, 1.6 / tempo, rng.random(), ((0.0, ding), (0.5, dong)))


def _cup(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.4 * SAMPLE_RATE))
    clink = np.sin(2 * np.pi * 4700 * pitch * t) + 0.6 * np.sin(2 * np.pi * 6900 * pitch * t)
    clink *= np.exp(-t * 12)
    for s in _random_events(n, rng, 6 * tempo):
        _place(out, s, clink * rng.uniform(0.5, 1.0))
    return out


def _frog(n, rng, pitch, tempo):
    t = _t(n)
    pulses = (np.sin(2 * np.pi * 38 * pitch * t) > 0.6).astype(np.float64)
    pos = _cycle_position(t, 1.1 / tempo, rng)
    gate = (pos < 0.3) | ((pos > 0.45) & (pos < 0.75))
    return _band(pulses * gate, 1700 * pitch, 3400 * pitch)


def _horn(n, rng, pitch, tempo):
    t = _t(n)
    phase = 2 * np.pi * pitch * t
    chord = np.sign(np.sin(350 * phase)) + np.sign(np.sin(440 * phase))
    pos = _cycle_position(t, 1.8 / tempo, rng)
    gate = (pos < 0.6) | ((pos > 0.75) & (pos < 1.35))
    return _band(chord * gate, 300, 2500)


def _train(n, rng, pitch, tempo):
    out = np.zeros(n)
    t = _t(int(0.22 * SAMPLE_RATE))
    for i, s in enumerate(_events(n, 0.22 / tempo, rng.random())):
        chug = _band(rng.standard_normal(len(t)), 250 * pitch, 1100 * pitch) * np.exp(-t * 20)
        _place(out, s, chug * (1.0 if i % 2 == 0 else 0.6))
    return out


_SYNTHS: dict[str, Callable[..., np.ndarray]] = {
    "ball": _ball,
    "star": _star,
    "box": _box,
    "heart": _heart,
    "fish": _fish,
    "tree": _tree,
    "car": _car,
    "bee": _bee,
    "cloud": _cloud,
    "clock": _clock,
    "kite": _kite,
    "phone": _phone,
    "moon": _moon,
    "drum": _drum,
    "boat": _boat,
    "house": _house,
    "cup": _cup,
    "frog": _frog,
    "horn": _horn,
    "train": _train,
}


def class_sound(name: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` of class ``name``'s sound (float32 (N,), 16 kHz, RMS about 0.08 with a
    random loudness factor in [0.7, 1.3]), with random pitch (+-10%), tempo (+-10%) and phase."""
    if name not in _SYNTHS:
        raise ValueError(f"no sound for class {name!r}")
    if num_samples <= 0:
        return np.zeros(0, np.float32)
    pitch, tempo = rng.uniform(0.9, 1.1, size=2)
    x = _SYNTHS[name](num_samples, rng, pitch, tempo)
    rms = float(np.sqrt(np.mean(x * x)))
    if rms > 0:
        x = x * (TARGET_RMS * rng.uniform(0.7, 1.3) / rms)
    return np.clip(x, -0.95, 0.95).astype(np.float32)


def with_noise_floor(
    x: np.ndarray, rng: np.random.Generator, level: float = NOISE_FLOOR
) -> np.ndarray:
    """``x`` (N,) float32 plus Gaussian noise of standard deviation ``level``, clipped to [-1, 1]."""
    noisy = x + rng.normal(0.0, level, size=len(x)).astype(np.float32)
    return np.clip(noisy, -1.0, 1.0).astype(np.float32)


def fade(x: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of ``seconds`` at both ends (no clicks at on/offsets)."""
    k = min(int(seconds * SAMPLE_RATE), len(x) // 2)
    if k == 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k, dtype=np.float32))
    y = x.copy()
    y[:k] *= ramp
    y[-k:] *= ramp[::-1]
    return y
