"""Data sources: each yields decoded clips and labels."""
