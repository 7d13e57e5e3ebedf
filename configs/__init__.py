"""Experiment configs: `default.py` declares every key; the other files start from it."""
