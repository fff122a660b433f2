"""GRPO math and one step's data flow: advantages, the policy loss, learner log-probs and inputs, batches sharded
over ranks, and rewards -> advantages -> samples (step_data.py). Pure torch/numpy."""
