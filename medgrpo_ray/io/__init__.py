"""Tier 0, file primitives every tier shares: atomic writes (atomic.py). Standard library only."""
