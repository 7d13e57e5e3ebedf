"""Serving a trained checkpoint: classifying video files (`predict.py`) and exporting a TensorFlow SavedModel
(`export.py`). Both start from `checkpoints.restore`."""
