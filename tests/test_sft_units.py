"""SFT pure parts: the loss reaches answer tokens only; the epoch cursor's order, exclusion and resume state."""
from __future__ import annotations

import json

import pytest
import torch

from medgrpo_ray.grpo.logprobs import LogprobSample, collate, gather_token_logprobs
from medgrpo_ray.sft.data import EpochCursor, answer_token_ids
from medgrpo_ray.sft.loss import sft_loss


def _sample(prompt_len: int, answer: list[int]) -> LogprobSample:
    return LogprobSample(input_ids=torch.arange(10, 10 + prompt_len), completion_ids=torch.tensor(answer),
                         pixel_values_videos=torch.zeros(1, 4), video_grid_thw=torch.tensor([[1, 1, 1]]))


def test_only_logits_that_predict_answer_tokens_get_gradient():
    """Two prompts (5 and 3 tokens) with answers of 2 and 4 tokens, right-padded to T = 7. The logits at t predict
    token t + 1, so row 0's answer is predicted from positions 4, 5 and row 1's from positions 2..5; every other
    position (prompt tokens, video placeholders, padding) must get exactly zero gradient."""
    samples = [_sample(5, [3, 4]), _sample(3, [5, 6, 7, 8])]
    _, pos, mask = collate(samples, pad_id=0)
    logits = torch.randn(2, 7, 16, requires_grad=True)
    targets = torch.zeros_like(pos)
    for i, s in enumerate(samples):
        targets[i, : len(s.completion_ids)] = s.completion_ids
    lp = gather_token_logprobs(logits, pos, targets) * mask
    loss, part = sft_loss(lp, mask, total_tokens=6)
    loss.backward()
    touched = (logits.grad.abs().sum(-1) > 0).tolist()
    assert touched == [[False, False, False, False, True, True, False],
                       [False, False, True, True, True, True, False]]
    assert part["tokens"] == 6.0
    # Token mean over the step: the loss is the mean negative log-prob of the six answer tokens.
    assert loss.item() == pytest.approx(-(lp[mask]).mean().item(), rel=1e-6)


def test_sft_loss_falls_to_zero_for_a_certain_model_and_ignores_masked_tokens():
    lp = torch.tensor([[0.0, 0.0, -5.0]])
    mask = torch.tensor([[True, True, False]])
    loss, _ = sft_loss(lp, mask, total_tokens=2)
    assert loss.item() == 0.0


def test_answer_tokens_end_with_eos(tiny_processor):
    tok = tiny_processor.tokenizer
    ids = answer_token_ids(tok, "tying")
    assert ids[-1] == tok.eos_token_id and tok.decode(ids[:-1]).strip() == "tying"


def test_cursor_epochs_are_permutations_and_resume_is_exact():
    c = EpochCursor(5, seed=3)
    first = c.next_batch(5)
    assert sorted(first) == [0, 1, 2, 3, 4] and c.epoch == 1 and c.epochs_done == 1.0
    second = c.next_batch(5)
    assert sorted(second) == [0, 1, 2, 3, 4] and second != first  # re-shuffled per epoch (seed 3)
    c.exclude([2])
    state = json.loads(json.dumps(c.state_dict()))
    d = EpochCursor(5, seed=3)
    d.load_state_dict(state)
    a, b = c.next_batch(12), d.next_batch(12)
    assert a == b and 2 not in a
    with pytest.raises(ValueError, match="records or the seed changed"):
        EpochCursor(6, seed=3).load_state_dict(state)
    d.exclude(range(5))
    with pytest.raises(RuntimeError, match="quarantined"):
        d.next_batch(1)
