"""Tier 5, workflows over the drivers and the core: inference over a split (inference/), the data check
(check_data/), the one-command MedGRPO pipeline, the normalization ablation and the smoke demo."""
