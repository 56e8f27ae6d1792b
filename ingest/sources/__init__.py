"""Readers of the raw corpora's own layouts (what a download of each corpus contains).

- :mod:`ingest.sources.audioset_csv`: AudioSet segment CSVs and the ontology class-label CSV.
- :mod:`ingest.sources.placesaudio_meta`: the PlacesAudio distribution's ``metadata/{split}.json``
  with optional word alignments.

Each reader validates its input and names the file and line (or entry and field) at fault.
"""
