"""The toy world's vocabulary: what each object class looks like, is called and sounds like.

Every class has
- a distinct appearance (shape, colour, texture; drawn by :mod:`ingest.toyworld.render`),
- a single spoken name word (its caption noun) and a colour/texture adjective that matches how
  it is drawn, so adjectives never contradict the picture,
- a characteristic non-speech sound (synthesised by :mod:`ingest.toyworld.sounds`),
- an AudioSet-style ontology id (``mid``) with a display name for the sound, and an ADE20K-style
  class id (1-based; 0 is background) used by the evaluation masks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToyClass:
    """One object class of the toy world."""

    name: str  # the spoken noun, e.g. "ball"
    adjective: str  # matches the drawing, e.g. "red"
    color: tuple[int, int, int]  # main body colour (RGB), jittered per instance
    sound: str  # short description of the characteristic sound
    mid: str  # AudioSet-ontology-style label id of the sound
    display_name: str  # ontology display name of the sound
    ade_class_id: int  # class id in the evaluation masks (1-based)

    @property
    def article(self) -> str:
        """The indefinite article that goes before the name ("a" or "an")."""
        return "an" if self.name[0] in "aeiou" else "a"


def _c(
    i: int, name: str, adjective: str, color: tuple[int, int, int], sound: str, display_name: str
) -> ToyClass:
    return ToyClass(name, adjective, color, sound, f"/t/tw{i:04d}", display_name, i)


CLASSES: tuple[ToyClass, ...] = (
    _c(1, "ball", "red", (220, 35, 35), "bouncing boings falling in pitch", "Ball bounce"),
    _c(2, "star", "yellow", (250, 205, 25), "high twinkling chime arpeggio", "Chime"),
    _c(3, "box", "wooden", (150, 90, 40), "hollow wooden knocks", "Knock"),
    _c(4, "heart", "pink", (240, 105, 170), "low lub-dub heartbeat over a murmur", "Heart sounds, heartbeat"),
    _c(5, "fish", "orange", (250, 135, 20), "rising bubble blips", "Bubbling"),
    _c(6, "tree", "green", (30, 125, 45), "swelling low wind rustle", "Rustling leaves"),
    _c(7, "car", "blue", (40, 75, 215), "droning engine hum", "Engine"),
    _c(8, "bee", "striped", (245, 190, 20), "nasal buzzing with vibrato", "Bee, wasp, etc."),
    _c(9, "cloud", "white", (238, 238, 244), "rolling thunder rumble", "Thunder"),
    _c(10, "clock", "round", (250, 238, 195), "ringing tick-tock over a low whirr", "Tick-tock"),
    _c(11, "kite", "purple", (140, 45, 200), "gliding whistle", "Whistle"),
    _c(12, "phone", "black", (45, 45, 50), "two-tone ringing trill", "Telephone bell ringing"),
    _c(13, "moon", "silver", (192, 196, 212), "soft falling owl hoots", "Owl"),
    _c(14, "drum", "teal", (20, 140, 135), "thumping drum beats with a rattle", "Drum"),
    _c(15, "boat", "navy", (30, 45, 120), "splashes of water", "Splash, splatter"),
    _c(16, "house", "tan", (210, 175, 125), "ding-dong doorbell", "Doorbell"),
    _c(17, "cup", "cyan", (70, 200, 225), "high ringing china clinks", "Clink"),
    _c(18, "frog", "lime", (135, 210, 45), "rasping croaks", "Frog"),
    _c(19, "horn", "gold", (215, 165, 30), "honking two-note horn", "Vehicle horn"),
    _c(20, "train", "maroon", (135, 30, 55), "puffing steam chugs", "Steam"),
)
# The vocabulary grew in releases: the first 12 classes, then 8 more. espeak-ng's audio for a word
# depends on what it said before, so the speech engine synthesises each release's new words
# after all earlier ones, and a world of the first 12 classes sounds the same as before the rest
# were added.
RELEASES: tuple[int, ...] = (12, 20)

BY_NAME: dict[str, ToyClass] = {c.name: c for c in CLASSES}


def select_classes(num_classes: int) -> tuple[ToyClass, ...]:
    """The first ``num_classes`` classes of the vocabulary (between 2 and ``len(CLASSES)``)."""
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in [2, {len(CLASSES)}], got {num_classes}")
    return CLASSES[:num_classes]
