"""Supervised fine-tuning on MedVidBench reference answers (the stage before GRPO): pure loss and data order here,
the driver in `sft/trainer.py`, the update on the same DeepSpeed learner group as GRPO (`PolicyLearner.sft_step`)."""
