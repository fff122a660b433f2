"""Tier 2, the learner engine: one DeepSpeed rank of the policy (policy.py), run inside actors/learner.py."""
