"""The hybrid caption reward: w * judge + (1 - w) * semantic similarity, batched over samples.

- judge: the mean of the five 1-5 aspect scores mapped to [0, 1] by (s - 1) / 4 (1 -> 0, 3 -> 0.5, 5 -> 1). The
  paper does not publish its mapping; (s - 1) / 4 is the leaderboard README's display mapping.
- similarity: cosine of sentence embeddings (all-MiniLM-L6-v2), clipped to [0, 1].
- video_summary, region_caption: one (answer, reference) pair. dense_captioning: the caption-quality half
  only, over the segments matched at the IoU thresholds (judge/dvc.py): the judge term is the leaderboard's dvc_llm
  aggregate, the similarity term the same per-threshold mean over the matched pairs' cosines. Localization is
  the rule-based reward's business (medgrpo_ray/rewards/dense_captioning.py).
Failure policy: when the judge fails for a sample after its retries, the reward is None ("no reward", the GRPO
driver leaves it out of the group statistics) with the reason, or similarity alone if `fallback_to_similarity`.
An empty or unparseable answer is a real outcome: 0.0 with the reason. Never a silent 0, never an exception.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from medgrpo_ray.judge.dvc import THRESHOLDS, judge_dense_captions, match_caption_pairs
from medgrpo_ray.judge.types import CaptionJudge, JudgeResult
from medgrpo_ray.rewards.parsers import parse_caption_segments
from medgrpo_ray.rewards.types import CaptionSegment, CaptionSegments, RewardResult

log = logging.getLogger(__name__)
_TEXT_TASKS = ("video_summary", "region_caption")


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...  # (N, D), unit rows


@dataclass(frozen=True)
class CaptionRewardSettings:
    """judge_weight: w in [0, 1] (paper: 0.5). fallback_to_similarity: on judge failure use similarity alone."""

    judge_weight: float = 0.5
    fallback_to_similarity: bool = False
    dvc_thresholds: tuple[float, ...] = THRESHOLDS

    def __post_init__(self) -> None:
        if not 0.0 <= self.judge_weight <= 1.0:
            raise ValueError(f"reward.caption_judge_weight must be in [0, 1] (the judge's share of the caption reward), "
                             f"got {self.judge_weight}; set reward.caption_judge_weight=<value in [0, 1]>")


@dataclass(frozen=True)
class CaptionSample:
    """One completion to score. For dense_captioning, `prediction` is the answer text (or parsed segments) and
    `reference` the GT segments (medgrpo_ray.rewards.ground_truth.caption_segments); otherwise both are texts."""

    prediction: str | Sequence[CaptionSegment]
    reference: str | Sequence[CaptionSegment]
    task: str


def judge_to_unit(score: float) -> float:
    """Map a 1-5 judge score to [0, 1]: (s - 1) / 4, clipped."""
    return min(1.0, max(0.0, (score - 1.0) / 4.0))


@dataclass
class _Plan:
    """What one sample needs: its judge pairs (by tau for DVC) and an early result if nothing is needed."""

    early: RewardResult | None = None
    text_pair: tuple[str, str] | None = None
    dvc: tuple[list[CaptionSegment], list[CaptionSegment]] | None = None


def _plan(sample: CaptionSample) -> _Plan:
    if sample.task in _TEXT_TASKS:
        pred, ref = str(sample.prediction or "").strip(), str(sample.reference or "").strip()
        if not ref:
            return _Plan(RewardResult(None, f"{sample.task}: empty reference caption (check the record's gnd)"))
        if not pred:
            return _Plan(RewardResult(0.0, f"{sample.task}: empty answer", {"judge": 0.0, "similarity": 0.0}))
        return _Plan(text_pair=(pred, ref))
    if sample.task == "dense_captioning":
        ref_segs = list(sample.reference) if not isinstance(sample.reference, str) else []
        if not ref_segs:
            return _Plan(RewardResult(None, "dense_captioning: no reference segments (check the record's struc_info)"))
        if isinstance(sample.prediction, str):
            parsed = parse_caption_segments(sample.prediction)
            if not isinstance(parsed, CaptionSegments):
                return _Plan(RewardResult(0.0, f"dense_captioning: {parsed.reason}", {"judge": 0.0, "similarity": 0.0}))
            pred_segs = list(parsed.items)
        else:
            pred_segs = list(sample.prediction)
        return _Plan(dvc=(pred_segs, ref_segs))
    return _Plan(RewardResult(None, f"task {sample.task!r} has no caption reward; expected video_summary, region_caption or dense_captioning"))


def caption_rewards(
    samples: Sequence[CaptionSample],
    judge: CaptionJudge | None,
    encoder: TextEncoder | None,
    settings: CaptionRewardSettings = CaptionRewardSettings(),
) -> list[RewardResult]:
    """One RewardResult per sample, in order. Judge calls of all samples run concurrently (one batch per task);
    all texts are embedded in one batched encode. `judge` may be None only with judge_weight 0, `encoder` only
    with judge_weight 1 and no similarity fallback."""
    w = settings.judge_weight
    use_judge, use_sim = w > 0, w < 1 or settings.fallback_to_similarity
    if (use_judge and judge is None) or (use_sim and encoder is None):
        raise ValueError(f"caption_rewards: judge_weight={w} needs {'a judge' if use_judge and judge is None else 'a text encoder'}")
    plans = [_plan(s) for s in samples]

    # judge: one batch per task, run concurrently (JudgeClient shares one loop, so this is safe and parallel)
    text_idx = {task: [i for i, p in enumerate(plans) if p.text_pair and samples[i].task == task] for task in _TEXT_TASKS}
    dvc_idx = [i for i, p in enumerate(plans) if p.dvc]
    verdicts: dict[int, JudgeResult] = {}
    dvc_verdicts: dict = {}
    if use_judge:
        jobs = {task: idx for task, idx in text_idx.items() if idx}
        with ThreadPoolExecutor(max_workers=len(jobs) + 1) as pool:
            futures = {task: pool.submit(_safe_score, judge, [plans[i].text_pair for i in idx], task) for task, idx in jobs.items()}
            dvc_future = pool.submit(judge_dense_captions, [plans[i].dvc for i in dvc_idx], judge, settings.dvc_thresholds) if dvc_idx else None
            for task, future in futures.items():
                verdicts.update(zip(jobs[task], future.result()))
            if dvc_future is not None:
                dvc_verdicts = dict(zip(dvc_idx, dvc_future.result()))

    # similarity: every text of every pair embedded once
    sims: dict[int, float] = {}
    sim_error = ""
    if use_sim:
        try:
            sims = _similarities(plans, encoder, settings.dvc_thresholds)  # type: ignore[arg-type]
        except Exception as exc:  # a broken encoder yields "no reward" with the reason, not a dead step
            sim_error = f"similarity failed: {type(exc).__name__}: {exc}"
            log.warning("caption reward %s", sim_error)

    out = []
    for i, (sample, plan) in enumerate(zip(samples, plans)):
        if plan.early is not None:
            out.append(plan.early)
            continue
        out.append(_combine(sample.task, verdicts.get(i), dvc_verdicts.get(i), sims.get(i), sim_error, settings))
    return out


def _safe_score(judge: CaptionJudge, pairs: list[tuple[str, str]], task: str) -> list[JudgeResult]:
    try:
        results = judge.score_pairs(pairs, task)
        if len(results) != len(pairs):
            raise ValueError(f"judge returned {len(results)} results for {len(pairs)} pairs")
        return results
    except Exception as exc:
        return [JudgeResult(error=f"judge raised {type(exc).__name__}: {exc}") for _ in pairs]


def _similarities(plans: list[_Plan], encoder: TextEncoder, thresholds: Sequence[float]) -> dict[int, float]:
    """Sample index -> similarity in [0, 1] (DVC: per-tau mean over matched pairs, then mean of non-empty taus)."""
    wanted: dict[int, dict[float, list[tuple[str, str]]]] = {}
    for i, plan in enumerate(plans):
        if plan.text_pair:
            wanted[i] = {0.0: [plan.text_pair]}
        elif plan.dvc:
            wanted[i] = match_caption_pairs(*plan.dvc, thresholds)
    texts = list(dict.fromkeys(t for by_tau in wanted.values() for ps in by_tau.values() for p in ps for t in p))
    vectors = dict(zip(texts, encoder.encode(texts))) if texts else {}
    out = {}
    for i, by_tau in wanted.items():
        per_tau = [np.mean([max(0.0, float(np.dot(vectors[a], vectors[b]))) for a, b in ps]) for ps in by_tau.values() if ps]
        out[i] = min(1.0, float(np.mean(per_tau))) if per_tau else 0.0
    return out


def _combine(task: str, verdict: JudgeResult | None, dvc, sim: float | None, sim_error: str, settings: CaptionRewardSettings) -> RewardResult:
    w = settings.judge_weight
    comps: dict = {"judge_weight": w}
    if sim is not None:
        comps["similarity"] = sim
    judge_unit, judge_error, flagged = None, "", False
    if w > 0:
        if dvc is not None:
            if dvc.score is not None and not dvc.matched:  # nothing matched: a real zero for both halves
                return RewardResult(0.0, f"dense_captioning: {dvc.reason}", {**comps, "judge": 0.0, "similarity": 0.0})
            judge_error = dvc.reason if dvc.score is None else ""
            if dvc.score is not None:
                comps["judge_1to5"] = dvc.score
                judge_unit = judge_to_unit(dvc.score)
            flagged = any(r.flagged_injection for r in dvc.results.values())
        elif verdict is not None:
            judge_error = verdict.error or ""
            if verdict.mean is not None:
                comps["judge_1to5"] = verdict.mean
                judge_unit = judge_to_unit(verdict.mean)
            flagged = verdict.flagged_injection
        comps["flagged_injection"] = 1.0 if flagged else 0.0
        if judge_unit is not None:
            comps["judge"] = judge_unit
    if w > 0 and judge_unit is None:
        why = f"{task}: judge failed: {judge_error or 'no verdict'}"
        if settings.fallback_to_similarity and sim is not None:
            return RewardResult(sim, f"{why}; similarity only (fallback_to_similarity)", comps)
        return RewardResult(None, why, comps)
    if w < 1 and sim is None:
        return RewardResult(None, f"{task}: {sim_error or 'no similarity'}", comps)
    return RewardResult(w * (judge_unit or 0.0) + (1.0 - w) * (sim or 0.0), "", comps)
