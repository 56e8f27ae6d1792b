"""Ray ingest jobs: raw corpora (AudioSet, PlacesAudio, any video table) to training shards."""
