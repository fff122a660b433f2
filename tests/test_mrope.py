"""Explicit Qwen2.5-VL M-RoPE positions, worked by hand."""
import torch

from medgrpo_ray.models.mrope import qwen2_vl_position_ids


def test_positions_follow_original_rule():
    """2 text tokens, a video of t=2, h=4, w=4 patches (2x2 after merging), 1 text token.

    second_per_grid 1.0 x tokens_per_second 2 -> temporal step 2. Video starts at 2:
      temporal: [2,2,2,2, 4,4,4,4]; height: [2,2,3,3]x2; width: [2,3,2,3]x2.
    Next text starts at max(all video positions) + 1 = 5 (transformers 5.x would say 2 + 2 = 4).
    A padded 12th column stays 0.
    """
    ids = torch.zeros((1, 12), dtype=torch.long)
    mask = torch.tensor([[1] * 11 + [0]])
    types = torch.tensor([[0, 0] + [2] * 8 + [0, 0]])
    pos = qwen2_vl_position_ids(ids, mask, types, torch.tensor([[2, 4, 4]]), torch.tensor([1.0]), 2, 2.0)
    assert pos[0, 0].tolist() == [0, 1, 2, 2, 2, 2, 4, 4, 4, 4, 5, 0]
    assert pos[1, 0].tolist() == [0, 1, 2, 2, 3, 3, 2, 2, 3, 3, 5, 0]
    assert pos[2, 0].tolist() == [0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 5, 0]
