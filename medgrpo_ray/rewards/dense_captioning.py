"""Dense video captioning (dense_captioning) training reward: localization F1 (caption quality joins later).

reward = mean over thresholds tau (RewardSettings.dvc_thresholds, default 0.3/0.5/0.7) of
F1_tau = 2 * M_tau / (#predicted + #GT), with M_tau one-to-one matches of IoU >= tau (plain IoU, seconds).
The answer is parsed exactly as the leaderboard parses it (duplicates dropped, overlaps flattened).
Differences from the leaderboard F1, on purpose: matching is one-to-one (the leaderboard's many-to-many
coverage pays for cutting one GT segment into several), IoU is computed in seconds (the leaderboard's
int(t * fps) truncation makes the reward flat over whole frames at fps 0.5), and an unparseable answer
scores 0 (the leaderboard leaves it out of the mean).
"""
from __future__ import annotations

from typing import Mapping

from medgrpo_ray.rewards.geometry import greedy_match, interval_iou
from medgrpo_ray.rewards.ground_truth import caption_segments
from medgrpo_ray.rewards.parsers import parse_caption_segments
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable


def localization_f1(pred: list[tuple[float, float]], gt: list[tuple[float, float]], thresholds: tuple[float, ...]) -> float:
    """Mean over thresholds of the one-to-one F1 = 2 * matches / (#pred + #gt)."""
    ious = [[interval_iou(p, g) for g in gt] for p in pred]
    f1s = [2.0 * len(greedy_match(ious, tau)) / (len(pred) + len(gt)) for tau in thresholds]
    return sum(f1s) / len(f1s)


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    gt = [(s.start, s.end) for s in caption_segments(record.get("struc_info"), where)]
    if not gt:
        return RewardResult(None, "no GT segments with captions in struc_info")
    parsed = parse_caption_segments(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0, "n_gt": len(gt)})
    pred = [(s.start, s.end) for s in parsed.items]
    value = localization_f1(pred, gt, settings.dvc_thresholds)
    return RewardResult(value, "ok", {"task": value, "parsed": 1.0, "n_pred": len(pred), "n_gt": len(gt), "flattened": float(parsed.flattened)})
