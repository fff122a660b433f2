"""Next-action prediction (next_action) training reward: 1 for the GT label after normalisation, else 0.

Normalisation (both sides): strip, lower-case, collapse whitespace, drop surrounding quotes and trailing
punctuation. The leaderboard is case-sensitive and maps a non-exact answer to the nearest class by sentence
embedding; the reward does neither, so only an exact label is paid (no credit for a fluent near-miss, and no
embedding model inside the reward loop).
"""
from __future__ import annotations

import re
from typing import Mapping

from medgrpo_ray.rewards.fields import text
from medgrpo_ray.rewards.parsers import parse_action
from medgrpo_ray.rewards.types import RewardResult, RewardSettings, Unparseable

_SPACES = re.compile(r"\s+")


def normalise_label(label: str) -> str:
    """'  "Suturing." ' -> 'suturing'."""
    s = _SPACES.sub(" ", label.strip().lower())
    return s.strip("\"'`").rstrip(".!;,").strip()


def reward(record: Mapping, completion: str, settings: RewardSettings, where: str = "?") -> RewardResult:
    gt = normalise_label(text(record.get("gnd")))
    if not gt:
        return RewardResult(None, "no GT action: field gnd is empty")
    parsed = parse_action(completion)
    if isinstance(parsed, Unparseable):
        return RewardResult(0.0, f"unparseable: {parsed.reason}", {"task": 0.0, "parsed": 0.0})
    value = 1.0 if normalise_label(parsed.text) == gt else 0.0
    return RewardResult(value, "ok", {"task": value, "parsed": 1.0})
