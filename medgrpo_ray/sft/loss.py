"""The SFT loss: cross-entropy on the answer tokens only.

The learner computes per-token log-probs of the completion (the reference answer plus EOS) exactly as for GRPO
(`grpo/logprobs.py`: logits at position p + j - 1 predict completion token j), so prompt tokens, video
placeholders included, carry no loss by construction; `mask` removes padding and zero-weight filler samples.
"""
from __future__ import annotations

import torch


def sft_loss(logp: torch.Tensor, mask: torch.Tensor, total_tokens: float) -> tuple[torch.Tensor, dict]:
    """-sum(log p of answer tokens) / total_tokens, where total_tokens counts the answer tokens of the whole
    step (all ranks and micro-batches), so summing the micro-batches' losses gives the step's token mean.

    logp, mask: (B, L). Returns the loss and metric sums for this micro-batch (nll_sum, tokens, top-1 is not
    known here)."""
    m = mask.to(logp.dtype)
    nll = -(logp * m).sum()
    return nll / max(float(total_tokens), 1.0), {"nll_sum": float(nll.detach()), "tokens": float(m.sum())}
