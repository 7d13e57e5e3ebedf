"""Benchmarks that print numbers (speed is checked here, never by timed tests): the input pipeline (`data.py`),
the model and train step beside Hugging Face's ViViT (`model.py`), and the accelerated paths against float32
(`gpu_check.py`)."""
