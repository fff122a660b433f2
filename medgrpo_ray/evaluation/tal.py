"""TAG (`tal`) as the leaderboard computes it: tag_miou_03 and tag_miou_05.

Per record, at threshold tau: each GT segment in order takes the not-yet-matched prediction with the highest
IoU (strictly above the running best, from 0) and is matched if that IoU >= tau. meanIoU@tau = mean IoU of the
matched pairs (0 if none): unmatched GT and extra predictions cost nothing. Segments are multiplied by fps
before the IoU, as the leaderboard does. tag_miou_* = plain mean over every TAL record of every dataset
(records without GT spans count as 0). recall@tau and meanIoU@0.7 (first public release) go to `details`.
"""
from __future__ import annotations

import numpy as np

from medgrpo_ray.evaluation.aggregate import dataset_means, mean
from medgrpo_ray.evaluation.bootstrap import Sample, pooled_ratio
from medgrpo_ray.evaluation.types import Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, record_fps, text
from medgrpo_ray.rewards.geometry import lb_tal_iou
from medgrpo_ray.rewards.ground_truth import tal_spans
from medgrpo_ray.rewards.parsers import parse_segments
from medgrpo_ray.rewards.types import Segments

THRESHOLDS = (0.3, 0.5, 0.7)


def match_at(pred: list[tuple[float, float]], gt: list[tuple[float, float]], tau: float) -> tuple[float, float]:
    """(meanIoU of matched pairs, recall) for one record at threshold tau, leaderboard matching."""
    used: set[int] = set()
    matched: list[float] = []
    for g in gt:
        best, best_i = 0.0, -1
        for i, p in enumerate(pred):
            if i not in used:
                iou = lb_tal_iou(p, g)
                if iou > best:
                    best, best_i = iou, i
        if best_i >= 0 and best >= tau:
            used.add(best_i)
            matched.append(best)
    return mean(matched), (len(matched) / len(gt) if gt else 0.0)


def record_scores(rid: str, record) -> dict[float, tuple[float, float]]:
    """tau -> (meanIoU, recall) for one TAL record."""
    fps = record_fps(record, rid)
    gt = [(s * fps, e * fps) for s, e in tal_spans(record.get("struc_info"), rid)]
    parsed = parse_segments(text(record.get("answer")))
    pred = [(s * fps, e * fps) for s, e in parsed.items] if isinstance(parsed, Segments) else []
    return {tau: match_at(pred, gt, tau) for tau in THRESHOLDS}


def evaluate_tal(items: list[Item]) -> tuple[Metric, Metric]:
    if not items:
        return not_computed("tag_miou_03", "no tal records"), not_computed("tag_miou_05", "no tal records")
    rows = [(record_dataset(rec), record_scores(rid, rec)) for rid, rec in items]
    no_gt = sum(1 for rid, rec in items if not tal_spans(rec.get("struc_info"), rid))
    details = {
        "recall": {str(t): mean([s[t][1] for _, s in rows]) for t in THRESHOLDS},
        "miou_07_f098": mean([s[0.7][0] for _, s in rows]),
        "records_without_gt": no_gt,
    }
    out = []
    for name, tau in (("tag_miou_03", 0.3), ("tag_miou_05", 0.5)):
        per = [(d, s[tau][0]) for d, s in rows]
        sample = Sample(tuple(rid for rid, _ in items), tuple(d for d, _ in rows),
                        np.array([[1.0, s[tau][0]] for _, s in rows]), pooled_ratio)
        out.append(Metric(name, mean([v for _, v in per]), dataset_means(per), len(rows), len(rows), "", details,
                          sample))
    return out[0], out[1]
