"""Dense-caption judging as the leaderboard does it (dvc_llm), per record, from parsed segments.

For each threshold tau in (0.3, 0.5, 0.7), each predicted segment takes the reference segment with the highest
plain IoU in seconds (overlap / (len1 + len2 - overlap); first on ties) if that IoU >= tau; several predictions
may take the same reference. Each matched (prediction caption, reference caption) pair is judged (once, even
when it matches at several tau). Per tau: the mean of each aspect over that tau's judged pairs, then the mean of
the non-zero aspect means (0 when no pair was judged). Score = mean of the non-zero per-tau values (1-5 scale).
Failed judge calls are left out of the means, as the leaderboard leaves them out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from medgrpo_ray.judge.types import ASPECTS, CaptionJudge, JudgeResult
from medgrpo_ray.rewards.geometry import interval_iou
from medgrpo_ray.rewards.types import CaptionSegment

THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
CaptionPair = tuple[str, str]  # (prediction caption, reference caption)


@dataclass(frozen=True)
class DvcJudgement:
    """The judged caption quality of one dense-captioning answer.

    score: 1-5 leaderboard aggregate; 0.0 when no predicted segment matched a reference at any tau (the
        leaderboard's value: a real outcome, not a failure); None when the judge failed for every matched pair.
    per_threshold: tau -> per-tau value (0.0 = no judged pair at that tau).
    pairs: tau -> the matched caption pairs; results: pair -> its JudgeResult.
    """

    score: float | None
    reason: str = ""
    per_threshold: dict[float, float] = field(default_factory=dict)
    pairs: dict[float, list[CaptionPair]] = field(default_factory=dict)
    results: dict[CaptionPair, JudgeResult] = field(default_factory=dict)

    @property
    def matched(self) -> bool:
        return any(self.pairs.values())


def match_caption_pairs(
    predicted: Sequence[CaptionSegment], reference: Sequence[CaptionSegment], thresholds: Sequence[float] = THRESHOLDS
) -> dict[float, list[CaptionPair]]:
    """tau -> (prediction caption, reference caption) for every prediction whose best reference has IoU >= tau."""
    out: dict[float, list[CaptionPair]] = {tau: [] for tau in thresholds}
    if not reference:
        return out
    for seg in predicted:
        ious = [interval_iou((seg.start, seg.end), (ref.start, ref.end)) for ref in reference]
        best = max(range(len(reference)), key=lambda j: (ious[j], -j))
        for tau in thresholds:
            if ious[best] >= tau:
                out[tau].append((seg.caption, reference[best].caption))
    return out


def aspect_mean_score(results: Sequence[JudgeResult]) -> float:
    """Mean over the five aspects of each aspect's mean over the successful results, zero means skipped (0.0 if
    none succeeded). With complete score sets this equals the mean of the per-pair means."""
    ok = [r.scores for r in results if r.scores is not None]
    if not ok:
        return 0.0
    means = [sum(s[a] for s in ok) / len(ok) for a in ASPECTS]
    nonzero = [m for m in means if m != 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


def aggregate_dvc(pairs: dict[float, list[CaptionPair]], results: dict[CaptionPair, JudgeResult]) -> tuple[float, dict[float, float]]:
    """(score, per-tau values) from matched pairs and their judge results (the leaderboard's aggregation)."""
    per_tau = {tau: aspect_mean_score([results[p] for p in ps]) for tau, ps in pairs.items()}
    nonzero = [v for v in per_tau.values() if v != 0]
    return (sum(nonzero) / len(nonzero) if nonzero else 0.0), per_tau


def judge_dense_captions(
    records: Sequence[tuple[Sequence[CaptionSegment], Sequence[CaptionSegment]]],
    judge: CaptionJudge,
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[DvcJudgement]:
    """One DvcJudgement per (predicted segments, reference segments) record; the unique caption pairs of all
    records go to the judge in one batch. Never raises for a record."""
    matched = [match_caption_pairs(pred, ref, thresholds) for pred, ref in records]
    unique = list(dict.fromkeys(p for by_tau in matched for ps in by_tau.values() for p in ps))
    try:
        judged = judge.score_pairs(unique, "dense_captioning") if unique else []
        if len(judged) != len(unique):
            raise ValueError(f"judge returned {len(judged)} results for {len(unique)} pairs")
    except Exception as exc:  # a broken judge must not kill the step: every pair fails with the reason
        judged = [JudgeResult(error=f"judge raised {type(exc).__name__}: {exc}") for _ in unique]
    results = dict(zip(unique, judged))

    out = []
    for (pred, ref), by_tau in zip(records, matched):
        mine = {p: results[p] for ps in by_tau.values() for p in ps}
        if not ref:
            out.append(DvcJudgement(None, "no reference segments", {}, by_tau, mine))
        elif not mine:
            why = "no predicted segments" if not pred else f"no predicted segment matches a reference at IoU >= {min(thresholds)}"
            out.append(DvcJudgement(0.0, why, {tau: 0.0 for tau in thresholds}, by_tau, mine))
        elif not any(r.ok for r in mine.values()):
            errors = sorted({r.error or "?" for r in mine.values()})
            out.append(DvcJudgement(None, f"judge failed for all {len(mine)} matched pairs: {'; '.join(errors)[:300]}", {}, by_tau, mine))
        else:
            score, per_tau = aggregate_dvc(by_tau, mine)
            out.append(DvcJudgement(score, "", per_tau, by_tau, mine))
    return out
