"""Moments in Time configs."""
