"""STG (`stg`) as the leaderboard computes it: stg_miou.

For each GT timestamp k (GT dict order) the prediction at "%.1f" % float(k) is looked up (so a GT key such as
"1.25" never matches); a missing one is [0, 0, 0, 0], and a [0, 0, 0, 0] after the first position takes the
previous aligned predicted box. Fallback `[[a, b, c, d]]` boxes are assigned to GT timestamps in order.
Per record: mean raw-pixel box IoU over positions where both boxes are four numbers (0 if none). A record
counts iff its GT box dict is non-empty; unparseable answers count as 0. stg_miou = mean over counted records.
"""
from __future__ import annotations

import numpy as np

from medgrpo_ray.evaluation.aggregate import dataset_means, mean
from medgrpo_ray.evaluation.bootstrap import Sample, pooled_ratio
from medgrpo_ray.evaluation.types import Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, text
from medgrpo_ray.rewards.geometry import lb_box_iou
from medgrpo_ray.rewards.ground_truth import stg_boxes
from medgrpo_ray.rewards.parsers import parse_timed_boxes
from medgrpo_ray.rewards.types import Box, TimedBoxes

_ZERO: Box = (0.0, 0.0, 0.0, 0.0)


def align(gt_keys: list[str], parsed: TimedBoxes | None) -> list[Box]:
    """The leaderboard's predicted box per GT key (see module docstring)."""
    if parsed is None:
        raw: list[Box | None] = [None] * len(gt_keys)
    elif parsed.fallback:
        raw = [parsed.ordered[i] if i < len(parsed.ordered) else None for i in range(len(gt_keys))]
    else:
        boxes = parsed.as_dict()
        raw = [boxes.get("%.1f" % float(k)) for k in gt_keys]
    aligned: list[Box] = []
    for i, box in enumerate(raw):
        box = _ZERO if box is None else box
        if i > 0 and tuple(box) == _ZERO:
            box = aligned[i - 1]
        aligned.append(box)
    return aligned


def record_miou(rid: str, record) -> float | None:
    """Mean IoU of one record, or None if its GT box dict is empty (record not counted)."""
    gt = stg_boxes(record.get("struc_info"), rid)
    if not gt:
        return None
    parsed = parse_timed_boxes(text(record.get("answer")))
    pred = align([k for k, _ in gt], parsed if isinstance(parsed, TimedBoxes) else None)
    return mean([lb_box_iou(p, g) for (_, g), p in zip(gt, pred) if g is not None])


def evaluate_stg(items: list[Item]) -> Metric:
    if not items:
        return not_computed("stg_miou", "no stg records")
    scored = [(rid, record_dataset(rec), record_miou(rid, rec)) for rid, rec in items]
    per = [(d, v) for _, d, v in scored if v is not None]
    skipped = len(scored) - len(per)
    if not per:
        return not_computed("stg_miou", f"all {len(items)} stg records have an empty GT box dict", len(items))
    counted = [(rid, d, v) for rid, d, v in scored if v is not None]  # counting depends on the GT only
    sample = Sample(tuple(r[0] for r in counted), tuple(r[1] for r in counted),
                    np.array([[1.0, v] for _, _, v in counted]), pooled_ratio)
    return Metric("stg_miou", mean([v for _, v in per]), dataset_means(per), len(per), len(items), "",
                  {"skipped_empty_gt": skipped}, sample)
