"""DenseAV: dense audio-visual features whose inner products localise words and sounds in images."""

from denseav.backbones import BackboneNotFoundError
from denseav.config import DenseAVConfig
from denseav.losses import DenseAVLoss
from denseav.model import AudioFeatures, DenseAV, DenseAVOutput, ImageFeatures

__all__ = [
    "AudioFeatures",
    "BackboneNotFoundError",
    "DenseAV",
    "DenseAVConfig",
    "DenseAVLoss",
    "DenseAVOutput",
    "ImageFeatures",
]
