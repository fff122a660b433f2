"""Greedy inference over a split, streamed through the rollout pool, resumable (run.py)."""
