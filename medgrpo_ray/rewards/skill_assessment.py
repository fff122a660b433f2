"""Skill assessment (skill_assessment) training reward: per-aspect partial credit.

reward = (number of GT aspects whose predicted `Aspect: k/5` equals the GT score) / (number of GT aspects);
a missing or misspelt aspect scores 0 for that aspect, aspects the GT lacks are ignored. If the GT has no
aspect scores, the reward is 1 when the level from the mean k/5 matches the GT level, else 0. The leaderboard
skips answers without any k/5 (so they cannot lower its number); here they score 0.
"""
from __future__ import annotations

from typing import Mapping

from medgrpo_ray.rewards.fields import text
from medgrpo_ray.rewards.ground_truth import skill_truth
from medgrpo_ray.rewards.parsers import parse_skill
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    level, aspects = skill_truth(record.get("struc_info"), text(record.get("gnd")), where)
    if not aspects and level is None:
        return RewardResult(None, "no GT skill scores or level in struc_info/gnd")
    parsed = parse_skill(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0})
    if aspects:
        hits = sum(parsed.aspects.get(name) == score for name, score in aspects.items())
        value = hits / len(aspects)
        return RewardResult(value, "ok", {"task": value, "parsed": 1.0, "hits": hits, "n_aspects": len(aspects)})
    value = 1.0 if parsed.level == level else 0.0
    return RewardResult(value, "ok (level only)", {"task": value, "parsed": 1.0})
