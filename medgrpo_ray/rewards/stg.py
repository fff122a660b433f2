"""Spatio-temporal grounding (stg) training reward: mean box IoU over the GT timestamps.

For each GT timestamp with a valid box: IoU of the predicted box at that time (both clipped to the frame) or
0 if the answer has no box there. Differences from the leaderboard, on purpose:
- a missing timestamp scores 0 (the leaderboard copies the previous predicted box forward, which pays an
  answer that writes one box);
- an entry that is not four numbers scores 0 (the leaderboard substitutes the last valid box);
- timestamps match numerically within `stg_time_tolerance_s` (the leaderboard looks up "%.1f" keys, so GT
  keys with two decimals never match and such records would carry no learning signal);
- boxes are clipped to the frame (`metadata` frame_size / width+height when present; otherwise only to
  non-negative coordinates), so the part of a box outside the image neither helps nor hurts.
"""
from __future__ import annotations

from typing import Mapping

from medgrpo_ray.rewards.fields import frame_size
from medgrpo_ray.rewards.geometry import box_iou, clip_box
from medgrpo_ray.rewards.ground_truth import stg_boxes
from medgrpo_ray.rewards.parsers import parse_timed_boxes
from medgrpo_ray.rewards.types import Box, RewardResult, RewardSettings, TimedBoxes, Unparseable


def aligned_predictions(gt_times: list[float], parsed: TimedBoxes, tolerance: float) -> list[Box | None]:
    """The predicted box for each GT time (None if missing); fallback boxes are taken in GT order."""
    if parsed.fallback:
        return [parsed.ordered[i] if i < len(parsed.ordered) else None for i in range(len(gt_times))]
    valid = [(float(k), box) for k, box in parsed.as_dict().items() if k not in parsed.carried]
    out: list[Box | None] = []
    for t in gt_times:
        near = [(abs(pt - t), box) for pt, box in valid if abs(pt - t) <= tolerance]
        out.append(min(near, key=lambda c: c[0])[1] if near else None)
    return out


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    gt = [(float(k), box) for k, box in stg_boxes(record.get("struc_info"), where) if box is not None]
    if not gt:
        return RewardResult(None, "no GT boxes in struc_info (expected [{'bbox_dict': {'t': [x1, y1, x2, y2]}}])")
    parsed = parse_timed_boxes(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0, "n_gt": len(gt)})
    frame = frame_size(record)
    preds = aligned_predictions([t for t, _ in gt], parsed, settings.stg_time_tolerance_s)
    ious = [0.0 if p is None else box_iou(clip_box(p, frame), clip_box(g, frame)) for (_, g), p in zip(gt, preds)]
    value = sum(ious) / len(ious)
    missing = sum(p is None for p in preds)
    return RewardResult(value, "ok", {"task": value, "parsed": 1.0, "n_gt": len(gt), "n_missing": missing, "frame_known": float(frame is not None)})
