"""The training application: ``accelerate launch trainer/main.py --config CONFIG.yaml``."""
