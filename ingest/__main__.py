"""`python -m ingest audioset|placesaudio|videos ...` (also installed as `denseav-ingest`)."""

import sys

from ingest.cli import main

if __name__ == "__main__":
    sys.exit(main())
