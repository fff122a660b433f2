"""Supervised fine-tuning on MedVidBench reference answers (the stage before GRPO), the pure part: the answer-token
loss (loss.py) and the data order (data.py). The driver is driver/sft_trainer.py; the update runs on the same
DeepSpeed learner group as GRPO (`PolicyLearner.sft_step`)."""
