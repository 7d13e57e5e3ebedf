"""Per-clip transforms inside the tf.data graph: temporal sampling (`sampling.py`) and augmentation consistent
across a clip's frames (`augment.py`)."""
