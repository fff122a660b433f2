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
from typing import TYPE_CHECKING

from medgrpo_ray.evaluation.aggregate import mean
from medgrpo_ray.evaluation.types import NOT_COMPUTED, Item, Metric, not_computed
from medgrpo_ray.judge.dvc import THRESHOLDS, aspect_mean_score, match_caption_pairs
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


def evaluate_summary_like(items: list[Item], judge: CaptionJudge | None, task: str, name: str) -> Metric:
    """vs_llm (task "video_summary") or rc_llm (task "region_caption")."""
    if not items:
        return not_computed(name, f"no {task} records")
    if judge is None:
        return not_computed(name, "no judge configured", len(items))
    rows = [(record_dataset(r), text(r.get("answer")).strip(), text(r.get("gnd")).strip()) for _, r in items]
    rows = [row for row in rows if row[1] and row[2]]
    results = _judge(judge, [(p, g) for _, p, g in rows], task)
    by_dataset: dict[str, list[JudgeResult]] = defaultdict(list)
    for d, p, g in rows:
        by_dataset[d].append(results[(p, g)])
    all_results = [res for rs in by_dataset.values() for res in rs]
    details = {"skipped_empty": len(items) - len(rows), **_judge_details(results)}
    if not any(r.ok for r in all_results):
        return Metric(name, None, {}, 0, len(items), f"{NOT_COMPUTED}: no successful judge score", details)
    per_dataset = {d: (aspect_score(rs) if any(r.ok for r in rs) else None) for d, rs in sorted(by_dataset.items())}
    counted = sum(r.ok for r in all_results)
    return Metric(name, aspect_score(all_results), per_dataset, counted, len(items), "", details)


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
    return Metric("dvc_llm", _dvc_score(overall), per_dataset, counted, len(items), note, details)
