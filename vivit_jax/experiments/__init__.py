"""Experiments built on the library: the paper's ablations (`ablation/`), a tiny image ViT pretrained on synthetic
frames (`image_pretrain.py`), and benchmarks that print numbers (`benchmarks/`: the input pipeline, the model and
train step beside Hugging Face's, and the accelerated paths against float32)."""
