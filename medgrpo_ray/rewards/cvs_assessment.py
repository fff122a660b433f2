"""Critical-view-of-safety assessment (cvs_assessment) training reward: per-component partial credit.

reward = (number of GT components whose predicted score equals the GT score) / (number of GT components).
A missing component, or a predicted value outside 0-2, scores 0 for that component. The leaderboard counts a
component only when it was parsed from the answer, so leaving a hard component out costs nothing there;
here it costs its share.
"""
from __future__ import annotations

from typing import Mapping

from medgrpo_ray.rewards.fields import text
from medgrpo_ray.rewards.ground_truth import cvs_truth
from medgrpo_ray.rewards.parsers import parse_cvs
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    truth = cvs_truth(record.get("struc_info"), text(record.get("gnd")), where)
    if not truth:
        return RewardResult(None, "no GT cvs_scores in struc_info/gnd")
    parsed = parse_cvs(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0})
    hits = sum(
        1 for key, score in truth.items() if 0 <= parsed.components.get(key, -1) <= 2 and parsed.components[key] == score
    )
    value = hits / len(truth)
    return RewardResult(value, "ok", {"task": value, "parsed": 1.0, "hits": hits, "n_components": len(truth)})
