"""Per-token log-probs of sampled completions under an HF vision-language model (the learner's side).

A batch is a list of samples, each a prompt (processor outputs for one video prompt) plus completion token ids.
Sequences are right-padded into one forward pass; pixel values are concatenated in sample order, which is how
Qwen-VL models expect several videos in one batch.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class LogprobSample:
    input_ids: torch.Tensor  # (P,) prompt token ids (vision placeholders included)
    completion_ids: torch.Tensor  # (L,) sampled token ids
    pixel_values_videos: torch.Tensor  # (N_patches, C*T*p*p) flattened video patches
    video_grid_thw: torch.Tensor  # (1, 3) temporal/height/width patch grid
    second_per_grid_ts: torch.Tensor | None = None  # (1,) seconds per temporal patch (Qwen2.5-VL)
    mm_token_type_ids: torch.Tensor | None = None  # (P,) 0 text / 1 image / 2 video; Qwen's M-RoPE needs it

    @classmethod
    def from_processor(cls, inputs, completion_ids, row: int = 0) -> "LogprobSample":
        """Sample from processor outputs for one prompt (batch row `row`) and a completion."""
        return cls(
            input_ids=inputs["input_ids"][row],
            completion_ids=torch.as_tensor(completion_ids, dtype=torch.long),
            pixel_values_videos=inputs["pixel_values_videos"],
            video_grid_thw=inputs["video_grid_thw"],
            second_per_grid_ts=inputs.get("second_per_grid_ts"),
            mm_token_type_ids=inputs["mm_token_type_ids"][row] if "mm_token_type_ids" in inputs else None,
        )


def collate(samples: Sequence[LogprobSample], pad_id: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Right-padded model inputs, plus for each sample the (B, L_max) positions of its completion tokens and a mask."""
    lengths = [len(s.input_ids) + len(s.completion_ids) for s in samples]
    t_max = max(lengths)
    l_max = max(len(s.completion_ids) for s in samples)
    ids = torch.full((len(samples), t_max), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), t_max), dtype=torch.long)
    pos = torch.zeros((len(samples), l_max), dtype=torch.long)
    mask = torch.zeros((len(samples), l_max), dtype=torch.bool)
    with_types = all(s.mm_token_type_ids is not None for s in samples)
    types = torch.zeros((len(samples), t_max), dtype=torch.long)
    for i, s in enumerate(samples):
        p, l = len(s.input_ids), len(s.completion_ids)
        ids[i, :p] = s.input_ids
        ids[i, p:p + l] = s.completion_ids
        attn[i, :p + l] = 1
        if with_types:
            types[i, :p] = s.mm_token_type_ids
        pos[i, :l] = torch.arange(p - 1, p + l - 1)  # logits at t predict token t + 1
        mask[i, :l] = True
    inputs = {
        "input_ids": ids,
        "attention_mask": attn,
        "pixel_values_videos": torch.cat([s.pixel_values_videos for s in samples]),
        "video_grid_thw": torch.cat([s.video_grid_thw for s in samples]),
    }
    if with_types:
        inputs["mm_token_type_ids"] = types
    if all(s.second_per_grid_ts is not None for s in samples):
        inputs["second_per_grid_ts"] = torch.cat([s.second_per_grid_ts for s in samples])
    return inputs, pos, mask


def gather_token_logprobs(logits: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[b, positions[b, j], targets[b, j]] -> (B, L), computed in fp32.

    logits (B, T, V); positions, targets (B, L).
    """
    picked = torch.gather(logits, 1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])).float()
    return torch.log_softmax(picked, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@functools.lru_cache(maxsize=None)
def takes_logits_to_keep(model_class: type) -> bool:
    """Whether the model's forward can skip the LM head at positions (HF's `logits_to_keep`)."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def first_needed_position(pos: torch.Tensor, mask: torch.Tensor) -> int:
    """The earliest sequence position whose logits predict a completion token (0 when there is none)."""
    return int(pos[mask].min()) if bool(mask.any()) else 0


def completion_logprobs(model, samples: Sequence[LogprobSample], pad_id: int, forward=None,
                        completion_only: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (B, L_max) of each sample's completion under `model`, and the (B, L_max) token mask.

    `forward` runs the model (default: `model` itself); a DeepSpeed engine wrapping `model` goes there so that
    its hooks (ZeRO-3 gathering, gradient bookkeeping) run. `completion_only` (default) applies the LM head only
    from the first completion position on (`logits_to_keep`): the prompt - mostly video tokens - needs no
    vocabulary-wide logits, which were (B, T, V) floats and the largest activation of the step; the log-probs are
    the same (tests/test_logits_to_keep.py)."""
    from medgrpo_ray.models.mrope import position_ids_for

    inputs, pos, mask = collate(samples, pad_id)
    position_ids = position_ids_for(model.config, inputs)
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if position_ids is not None:
        inputs["position_ids"] = position_ids.to(device)
    extra = {}
    if completion_only and takes_logits_to_keep(type(model)):
        first = first_needed_position(pos, mask)
        extra["logits_to_keep"] = inputs["input_ids"].shape[1] - first
        pos = (pos - first).clamp_min(0)
    logits = (forward or model)(**inputs, use_cache=False, **extra).logits
    targets = torch.zeros_like(pos)
    for i, s in enumerate(samples):
        targets[i, : len(s.completion_ids)] = s.completion_ids
    lp = gather_token_logprobs(logits, pos.to(device), targets.to(device))
    return lp * mask.to(device), mask.to(device)
