"""3-D rotary positions (M-RoPE) for Qwen2-VL / Qwen2.5-VL prompts with video, as the original model defines them.

Why this exists: transformers 5.x computes the first text position after a video as `start + max(h, w) / merge`,
ignoring how far the temporal positions reached, while the original Qwen2.5-VL rule (and vLLM) continues at
`max(all video positions) + 1`. Whenever a video has more than one temporal patch the two disagree and learner
log-probs drift from rollout log-probs (seen here: 2-3e-3 per token on the tiny model). The learner therefore
passes these positions explicitly. Qwen3-VL separates frames with timestamp text, where both rules agree, so it
keeps the library's positions.
"""
from __future__ import annotations

import itertools

import torch

MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


def needs_explicit_positions(config) -> bool:
    return getattr(config, "model_type", "") in MODEL_TYPES


def qwen2_vl_position_ids(input_ids: torch.Tensor, attention_mask: torch.Tensor, mm_token_type_ids: torch.Tensor,
                          video_grid_thw: torch.Tensor | None, second_per_grid_ts: torch.Tensor | None,
                          spatial_merge_size: int, tokens_per_second: float,
                          image_grid_thw: torch.Tensor | None = None) -> torch.Tensor:
    """Position ids (3, B, T) for right-padded rows; padded positions are 0.

    Text advances all three axes together; a visual block of (t, h, w) merged patches gets temporal positions
    `floor(i_t * second_per_grid * tokens_per_second)`, height and width positions `i_h`, `i_w`, all offset by
    the running start; the next block starts at the block's maximum + 1.
    """
    bsz, seqlen = input_ids.shape
    out = torch.zeros((3, bsz, seqlen), dtype=torch.long)
    videos = iter(video_grid_thw.tolist() if video_grid_thw is not None else [])
    images = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    seconds = iter(second_per_grid_ts.tolist() if second_per_grid_ts is not None else [])
    for b in range(bsz):
        keep = attention_mask[b].bool()
        types = mm_token_type_ids[b][keep].tolist()
        parts, start = [], 0
        for kind, grp in itertools.groupby(types):
            n = len(list(grp))
            if kind == 0:
                parts.append(torch.arange(n).expand(3, n) + start)
            else:
                t, h, w = next(videos) if kind == 2 else next(images)
                h, w = h // spatial_merge_size, w // spatial_merge_size
                step = float(next(seconds, 1.0)) * tokens_per_second if kind == 2 else 1.0
                tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
                pos = torch.stack([(tt.float() * step).long(), hh, ww]).reshape(3, -1)
                if pos.shape[1] != n:
                    raise ValueError(f"row {b}: {n} placeholder tokens but the grid {t}x{h}x{w} needs {pos.shape[1]}")
                parts.append(pos + start)
            start = int(parts[-1].max()) + 1
        out[:, b, keep] = torch.cat(parts, dim=1)
    return out


def position_ids_for(model_config, inputs: dict) -> torch.Tensor | None:
    """Explicit positions for `inputs` when the model family needs them, else None (let the model compute)."""
    if not needs_explicit_positions(model_config) or "mm_token_type_ids" not in inputs:
        return None
    vc = model_config.vision_config
    return qwen2_vl_position_ids(
        inputs["input_ids"].cpu(), inputs["attention_mask"].cpu(), inputs["mm_token_type_ids"].cpu(),
        inputs.get("video_grid_thw"), inputs.get("second_per_grid_ts"), int(vc.spatial_merge_size),
        float(getattr(vc, "tokens_per_second", 1.0)), inputs.get("image_grid_thw"),
    )
