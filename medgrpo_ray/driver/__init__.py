"""Tier 4, the applications on a Ray cluster: the GRPO driver (trainer.py, grpo_step.py, rollout_ahead.py,
syncer.py, train_loop.py), its cluster plumbing (cluster.py, actor_groups.py, cluster_checkpoint.py) and the SFT
driver (sft_trainer.py)."""
