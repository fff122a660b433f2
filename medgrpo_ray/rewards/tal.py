"""Temporal action grounding (tal) training reward: a soft F1 of one-to-one matched segment IoUs.

reward = 2 * sum(IoU of matched pairs) / (#predicted + #GT), pairs matched one-to-one by descending IoU
(seconds, plain IoU). Unlike the leaderboard's meanIoU (mean IoU of the matched pairs only), every extra,
duplicate or reversed predicted segment enlarges the denominator, so spamming segments lowers the reward.
"""
from __future__ import annotations

from typing import Mapping

from medgrpo_ray.rewards.geometry import greedy_match, interval_iou
from medgrpo_ray.rewards.ground_truth import tal_spans
from medgrpo_ray.rewards.parsers import parse_segments
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable


def soft_f1(pred: list[tuple[float, float]], gt: list[tuple[float, float]]) -> tuple[float, float]:
    """(soft F1, sum of matched IoU) for predicted and GT (start, end) segments in seconds."""
    ious = [[interval_iou(p, g) for g in gt] for p in pred]
    total = sum(iou for _, _, iou in greedy_match(ious))
    return 2.0 * total / (len(pred) + len(gt)), total


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    gt = tal_spans(record.get("struc_info"), where)
    if not gt:
        return RewardResult(None, "no GT spans in struc_info (expected [{'spans': [{'start', 'end'}]}])")
    parsed = parse_segments(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0, "n_gt": len(gt)})
    pred = list(parsed.items)
    value, total = soft_f1(pred, gt)
    return RewardResult(value, "ok", {"task": value, "parsed": 1.0, "iou_sum": total, "n_pred": len(pred), "n_gt": len(gt)})
