"""GRPO math: log-probs, advantages and the policy loss (pure torch/numpy)."""
