"""Caption-judge columns as the leaderboard computes them: dvc_llm, vs_llm, rc_llm (1-5 scale).

Only computed with a judge (judge.types.CaptionJudge); failed judge calls are left out of the means.
- vs_llm / rc_llm: one judged pair (answer, gnd) per record; records with an empty answer or GT are skipped;
  value = mean over the five aspects of the aspect's mean over judged records.
- dvc_llm: for tau in (0.3, 0.5, 0.7) each predicted segment (parsed as for dvc_f1, seconds) takes the GT
  segment with the highest plain IoU >= tau (first on ties); each (prediction caption, GT caption) pair is
  judged. Per tau: the mean of each aspect over that tau's pairs, then the mean of the non-zero aspect means;
  dvc_llm = mean of the non-zero per-tau values (0 when no segment matched at any tau). The same pair is
  sent to the judge once even when it matches at several tau.
"""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from medgrpo_ray.evaluation.aggregate import mean
from medgrpo_ray.evaluation.bootstrap import Sample, nonzero_mean
from medgrpo_ray.evaluation.types import NOT_COMPUTED, Item, Metric, not_computed
from medgrpo_ray.judge.dvc import THRESHOLDS, aspect_mean_score, match_caption_pairs
from medgrpo_ray.judge.types import ASPECTS
from medgrpo_ray.rewards.fields import record_dataset, text
from medgrpo_ray.rewards.ground_truth import caption_segments
from medgrpo_ray.rewards.parsers import parse_caption_segments
from medgrpo_ray.rewards.types import CaptionSegments

if TYPE_CHECKING:  # the judge package may import its client libraries; the evaluator needs only the shapes
    from medgrpo_ray.judge.types import CaptionJudge, JudgeResult

# The pairing and aspect aggregation are the judge package's (judge/dvc.py), shared with the caption rewards;
# this module pools them over records and datasets.
aspect_score = aspect_mean_score


def _judge(judge: CaptionJudge, pairs: list[tuple[str, str]], task: str) -> dict[tuple[str, str], JudgeResult]:
    unique = list(dict.fromkeys(pairs))
    results = judge.score_pairs(unique, task) if unique else []
    if len(results) != len(unique):
        raise ValueError(f"judge.score_pairs returned {len(results)} results for {len(unique)} {task} pairs; expected one per pair")
    return dict(zip(unique, results))


def _judge_details(results: dict[tuple[str, str], JudgeResult]) -> dict:
    return {
        "pairs_judged": len(results),
        "judge_ok": sum(r.ok for r in results.values()),
        "flagged_injection": sum(r.flagged_injection for r in results.values()),
    }


def _judged_stats(results: Sequence[JudgeResult]) -> list[float]:
    """[pairs, successful, sum of each aspect's score over the successful ones] of some judged pairs."""
    ok = [r.scores for r in results if r.scores is not None]
    return [float(len(results)), float(len(ok))] + [float(sum(sc[a] for sc in ok)) for a in ASPECTS]


def _aspect_score(s: np.ndarray) -> np.ndarray:
    """From _judged_stats columns: aspect_mean_score (0 when nothing succeeded)."""
    ok = s[:, 1:2]
    means = np.where(ok > 0, s[:, 2:] / np.maximum(ok, 1.0), 0.0)
    return nonzero_mean(means)


def _summary_value(sums: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    s = sum(sums.values())
    return np.where(s[:, 1] > 0, _aspect_score(s), np.nan)  # no successful score: not computed


def _dvc_value(sums: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    s = sum(sums.values())
    width = 2 + len(ASPECTS)
    per_tau = np.stack([_aspect_score(s[:, i * width:(i + 1) * width]) for i in range(len(THRESHOLDS))], axis=1)
    pairs = sum(s[:, i * width] for i in range(len(THRESHOLDS)))
    ok = sum(s[:, i * width + 1] for i in range(len(THRESHOLDS)))
    return np.where((pairs > 0) & (ok == 0), np.nan, nonzero_mean(per_tau))


def evaluate_summary_like(items: list[Item], judge: CaptionJudge | None, task: str, name: str) -> Metric:
    """vs_llm (task "video_summary") or rc_llm (task "region_caption")."""
    if not items:
        return not_computed(name, f"no {task} records")
    if judge is None:
        return not_computed(name, "no judge configured", len(items))
    every = [(rid, record_dataset(r), text(r.get("answer")).strip(), text(r.get("gnd")).strip()) for rid, r in items]
    rows = [row[1:] for row in every if row[2] and row[3]]
    results = _judge(judge, [(p, g) for _, p, g in rows], task)
    # every record is a row (an empty answer, skipped, is part of what is resampled); pooled over datasets
    sample = Sample(tuple(r[0] for r in every), tuple(r[1] for r in every),
                    np.array([_judged_stats([results[(p, g)]] if p and g else []) for _, _, p, g in every]),
                    _summary_value)
    by_dataset: dict[str, list[JudgeResult]] = defaultdict(list)
    for d, p, g in rows:
        by_dataset[d].append(results[(p, g)])
    all_results = [res for rs in by_dataset.values() for res in rs]
    details = {"skipped_empty": len(items) - len(rows), **_judge_details(results)}
    if not any(r.ok for r in all_results):
        return Metric(name, None, {}, 0, len(items), f"{NOT_COMPUTED}: no successful judge score", details)
    per_dataset = {d: (aspect_score(rs) if any(r.ok for r in rs) else None) for d, rs in sorted(by_dataset.items())}
    counted = sum(r.ok for r in all_results)
    return Metric(name, aspect_score(all_results), per_dataset, counted, len(items), "", details, sample)


def matched_caption_pairs(rid: str, record) -> dict[float, list[tuple[str, str]]]:
    """tau -> (predicted caption, GT caption) pairs for one dense-captioning record."""
    gt = caption_segments(record.get("struc_info"), rid)
    parsed = parse_caption_segments(text(record.get("answer")))
    if not gt or not isinstance(parsed, CaptionSegments):
        return {tau: [] for tau in THRESHOLDS}
    return match_caption_pairs(parsed.items, gt, THRESHOLDS)


def _dvc_score(by_tau: dict[float, list[JudgeResult]]) -> float:
    return mean([v for v in (aspect_score(by_tau[tau]) for tau in THRESHOLDS) if v != 0])


def evaluate_dvc_llm(items: list[Item], judge: CaptionJudge | None) -> Metric:
    if not items:
        return not_computed("dvc_llm", "no dense_captioning records")
    if judge is None:
        return not_computed("dvc_llm", "no judge configured", len(items))
    per_record = [(record_dataset(rec), matched_caption_pairs(rid, rec)) for rid, rec in items]
    results = _judge(judge, [p for _, by_tau in per_record for tau in THRESHOLDS for p in by_tau[tau]], "dense_captioning")
    grouped: dict[str, dict[float, list[JudgeResult]]] = defaultdict(lambda: {tau: [] for tau in THRESHOLDS})
    overall: dict[float, list[JudgeResult]] = {tau: [] for tau in THRESHOLDS}
    for dataset, by_tau in per_record:
        for tau in THRESHOLDS:
            judged = [results[p] for p in by_tau[tau]]
            grouped[dataset][tau].extend(judged)
            overall[tau].extend(judged)
    details = {"pairs_per_tau": {str(t): len(overall[t]) for t in THRESHOLDS}, **_judge_details(results)}
    note = "" if results else "no predicted segment matched a GT segment at any threshold"
    if results and not any(r.ok for r in results.values()):
        return Metric("dvc_llm", None, {}, 0, len(items), f"{NOT_COMPUTED}: no successful judge score", details)
    per_dataset = {d: _dvc_score(g) for d, g in sorted(grouped.items())}
    counted = sum(1 for _, by_tau in per_record if by_tau[THRESHOLDS[0]])
    stats = np.array([[v for tau in THRESHOLDS for v in _judged_stats([results[p] for p in by_tau[tau]])]
                      for _, by_tau in per_record]).reshape(len(items), len(THRESHOLDS) * (2 + len(ASPECTS)))
    sample = Sample(tuple(rid for rid, _ in items), tuple(d for d, _ in per_record), stats, _dvc_value)
    return Metric("dvc_llm", _dvc_score(overall), per_dataset, counted, len(items), note, details, sample)
