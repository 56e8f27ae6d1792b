"""A small synthetic audio-visual world in the real raw layouts (PlacesAudio, AudioSet, the
released DenseAV prompted-segmentation sets), with exact ground truth: per-pixel class masks,
word times, and which object is sounding when.

    python -m ingest.toyworld --out DIR --seed 0 --size default

See ingest/toyworld/README.md.
"""

from ingest.toyworld.classes import CLASSES, ToyClass
from ingest.toyworld.config import SIZES, WorldConfig, preset
from ingest.toyworld.world import GENERATOR_VERSION, generate_world, video_url_template

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "SIZES",
    "ToyClass",
    "WorldConfig",
    "generate_world",
    "preset",
    "video_url_template",
]
