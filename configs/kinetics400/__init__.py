"""Kinetics-400 configs (ViViT-B and ViViT-L)."""
