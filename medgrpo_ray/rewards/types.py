"""Typed values of the reward layer: parsed answers, the "unparseable" result, reward results and settings.

Every parser returns either one of the parsed types below or `Unparseable(reason)`; every reward returns a
`RewardResult` whose `value` is a float in [0, 1] or None ("no reward", with the reason).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

Box = tuple[float, float, float, float]  # (x1, y1, x2, y2), pixels as written in the answer / struc_info


@dataclass(frozen=True)
class Unparseable:
    """An answer the parser could not read; `reason` says what was expected."""

    reason: str


@dataclass(frozen=True)
class Segments:
    """Temporal segments (start, end) in seconds, in answer order, as written (no reordering).

    `source` is "range" for `a-b` matches, "prose" for the `X to Y` / `HH:MM:SS to HH:MM:SS` fallback.
    """

    items: tuple[tuple[float, float], ...]
    source: str = "range"


@dataclass(frozen=True)
class TimedBoxes:
    """Boxes per timestamp. `entries` holds (key, box) with key = str(float(t)) in answer order (a later
    duplicate key overwrites the earlier box in `as_dict`). `carried` are keys whose written box was not 4
    numbers and took the previous valid box (leaderboard rule). `fallback` is True when the answer had no
    "t seconds: [...]" entries and `ordered` holds `[[a, b, c, d]]` boxes to assign to GT timestamps in order.
    """

    entries: tuple[tuple[str, Box], ...] = ()
    carried: frozenset[str] = frozenset()
    fallback: bool = False
    ordered: tuple[Box, ...] = ()

    def as_dict(self) -> dict[str, Box]:
        return dict(self.entries)


@dataclass(frozen=True)
class CaptionSegment:
    start: float  # seconds, as written
    end: float
    caption: str


@dataclass(frozen=True)
class CaptionSegments:
    """Dense-caption segments after duplicate removal and, if any two overlapped, flattening."""

    items: tuple[CaptionSegment, ...]
    flattened: bool = False
    source: str = "primary"  # "primary" (`a-b seconds: caption` lines) or "zero_shot" (per-line fallback)


@dataclass(frozen=True)
class SkillAnswer:
    """A skill assessment: every `k/5` number in the text and the `Aspect: k/5` pieces."""

    numbers: tuple[int, ...]
    aspects: Mapping[str, int]

    @property
    def level(self) -> str | None:
        """Level from the mean of all k/5 numbers: <=2.0 novice, <=3.5 intermediate, else expert."""
        if not self.numbers:
            return None
        return level_from_mean(sum(self.numbers) / len(self.numbers))


@dataclass(frozen=True)
class CvsAnswer:
    """CVS component scores parsed from the answer (keys two_structures, cystic_plate, hepatocystic_triangle)."""

    components: Mapping[str, int]


@dataclass(frozen=True)
class ActionAnswer:
    """A next-action answer: the text after `strip()`."""

    text: str


def level_from_mean(mean: float) -> str:
    """The leaderboard's skill-level buckets for a mean 1-5 score."""
    if mean <= 2.0:
        return "novice"
    if mean <= 3.5:
        return "intermediate"
    return "expert"


@dataclass(frozen=True)
class RewardResult:
    """A training reward: `value` in [0, 1], or None meaning "no reward" with `reason` saying why.

    `components` holds the numbers the value was computed from (for logging), e.g. {"task": 0.8, "parsed": 1.0}.
    """

    value: float | None
    reason: str = ""
    components: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class RewardSettings:
    """Knobs of the rule-based rewards (the config schema maps onto these).

    format_weight: weight w of the format term; value = (1 - w) * task_reward + w * parsed, parsed in {0, 1}.
        Default 0.0: the raw reward stays equal to the task score, which keeps the normalization statistics of
        a baseline meaningful; raise it (e.g. 0.1) for a policy that does not yet write the answer formats.
    dvc_thresholds: temporal IoU thresholds averaged by the dense-captioning localization F1 reward.
    stg_time_tolerance_s: a predicted timestamp matches a GT timestamp when they differ by at most this.
    """

    format_weight: float = 0.0
    dvc_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    stg_time_tolerance_s: float = 1e-3

    def __post_init__(self) -> None:
        if not 0.0 <= self.format_weight <= 1.0:
            raise ValueError(f"RewardSettings.format_weight must be in [0, 1], got {self.format_weight}")
        if not self.dvc_thresholds or not all(0.0 < t <= 1.0 for t in self.dvc_thresholds):
            raise ValueError(f"RewardSettings.dvc_thresholds must be non-empty values in (0, 1], got {self.dvc_thresholds}")
        if self.stg_time_tolerance_s < 0:
            raise ValueError(f"RewardSettings.stg_time_tolerance_s must be >= 0, got {self.stg_time_tolerance_s}")
