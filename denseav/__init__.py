"""DenseAV: dense audio-visual features whose inner products localise words and sounds in images."""
