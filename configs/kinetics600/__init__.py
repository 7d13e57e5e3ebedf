"""Kinetics-600 configs."""
