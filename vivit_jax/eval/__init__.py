"""Evaluation: the one evaluation path and what the trainer runs when (`evaluators.py`), additive metrics
(`metrics.py`), and result files (`outputs.py`)."""
