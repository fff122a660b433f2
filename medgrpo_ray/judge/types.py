"""Types shared by the judge, the evaluator and the caption rewards (no I/O, no heavy imports)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

# The five clinical dimensions, in prompt order. Keys are stable identifiers used in caches and metrics.
ASPECTS: tuple[str, ...] = (
    "terminology",  # medical terminology precision
    "instrument_anatomy",  # instrument and anatomy identification
    "specificity",  # specificity vs vagueness
    "clinical_context",  # clinical procedure context
    "action_state",  # action and state accuracy
)


@dataclass(frozen=True)
class JudgeResult:
    """One judged (prediction, reference) pair: five 1-5 scores, or an error saying why there are none."""

    scores: dict[str, int] | None = None  # aspect -> 1..5; None when the judge failed
    error: str | None = None  # why there is no score (after retries), e.g. "timeout after 3 attempts"
    flagged_injection: bool = False  # the prediction addressed the grader
    cached: bool = False
    attempts: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.scores is not None

    @property
    def mean(self) -> float | None:
        """Mean of the five aspect scores on the 1-5 scale (the leaderboard's per-pair score)."""
        if self.scores is None:
            return None
        return sum(self.scores.values()) / len(self.scores)


class CaptionJudge(Protocol):
    """What the evaluator and the caption rewards need from a judge."""

    def score_pairs(self, pairs: Sequence[tuple[str, str]], task: str) -> list[JudgeResult]:
        """Score (prediction, reference) pairs for `task`; one result per pair, in order; never raises for a pair."""
        ...
