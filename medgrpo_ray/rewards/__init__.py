"""Rule-based training rewards per MedVidBench task (pure Python; docs/rewards.md has every formula).

`compute_reward(record, completion)` dispatches on the record's canonical task and returns a `RewardResult`:
a value in [0, 1], or None with a reason ("needs judge" for video_summary and region_caption, missing
ground truth, an unknown qa_type). It never raises for bad data, so one bad record cannot stop a step.
"""
from __future__ import annotations

from typing import Any

from medgrpo_ray.rewards import (
    cvs_assessment,
    dense_captioning,
    next_action,
    skill_assessment,
    stg,
    tal,
)
from medgrpo_ray.rewards.fields import as_mapping, record_task
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable

__all__ = ["compute_reward", "RewardResult", "RewardSettings", "Unparseable", "NEEDS_JUDGE"]

NEEDS_JUDGE = "needs judge"
_DEFAULT = RewardSettings()
_RULES = {
    "tal": tal.reward,
    "stg": stg.reward,
    "next_action": next_action.reward,
    "dense_captioning": dense_captioning.reward,
    "skill_assessment": skill_assessment.reward,
    "cvs_assessment": cvs_assessment.reward,
}


def compute_reward(record: Any, completion: str, settings: RewardSettings | None = None, rid: str = "?") -> RewardResult:
    """Raw training reward of `completion` for `record` (published-format Mapping, or an object with
    `.to_dict()`); `rid` names the record in reasons.

    With format_weight w > 0 the value is (1 - w) * task + w * parsed (parsed = 1 if the answer parsed).
    """
    settings = settings or _DEFAULT
    rec = as_mapping(record)
    try:
        task = record_task(rec, rid)
        if task not in _RULES:
            return RewardResult(None, NEEDS_JUDGE, {"task_name": task})
        result = _RULES[task](rec, completion or "", settings, rid)
    except ValueError as err:  # malformed GT field (the message names the record): no reward, the step goes on
        return RewardResult(None, f"bad record: {err}")
    except TypeError as err:  # a GT field of the wrong shape, e.g. "spans": 5
        return RewardResult(None, f"bad record {rid}: struc_info has an unexpected shape ({err})")
    if result.value is None or settings.format_weight == 0.0:
        return result
    w = settings.format_weight
    value = (1.0 - w) * result.value + w * result.components.get("parsed", 0.0)
    return RewardResult(min(1.0, max(0.0, value)), result.reason, result.components)
