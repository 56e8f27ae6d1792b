"""Shared test settings: no traffic leaves this machine, and runs are deterministic."""

import os

# Set before any test imports transformers or ray: hub look-ups fail at once instead of retrying,
# and no tool reports usage anywhere.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
