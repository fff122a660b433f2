"""DVC localization (`dense_captioning*`) as the leaderboard computes it: dvc_f1.

Per record: answer parsed as in parsers.parse_caption_segments (duplicates dropped, overlaps flattened);
prediction and GT times become frames with int(t * fps) (truncation: at fps 0.5, 2.0 s and 3.0 s are both
frame 1). For tau in (0.3, 0.5, 0.7), strictly IoU > tau, many-to-many: P_tau = predictions that exceed tau
with some GT / #predictions, R_tau likewise for GT; P, R = means over tau; F1 = 2PR / (P + R) (0 if P + R = 0).
Records without a parsed prediction or without GT have no F1. Per dataset F1_d = mean over records with an
F1 (0 if none); dvc_f1 = sum_d F1_d * N_d / sum_d N_d with N_d = all dense-captioning records of d.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping

import numpy as np

from medgrpo_ray.evaluation.aggregate import mean
from medgrpo_ray.evaluation.bootstrap import Sample
from medgrpo_ray.evaluation.types import Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, record_fps, text
from medgrpo_ray.rewards.geometry import lb_dvc_iou
from medgrpo_ray.rewards.ground_truth import caption_segments
from medgrpo_ray.rewards.parsers import parse_caption_segments
from medgrpo_ray.rewards.types import CaptionSegments

THRESHOLDS = (0.3, 0.5, 0.7)


def to_frames(segments: list[tuple[float, float]], fps: float) -> list[tuple[int, int]]:
    """Seconds -> frame indices by truncation, as the leaderboard does."""
    return [(int(s * fps), int(e * fps)) for s, e in segments]


def coverage_f1(pred: list[tuple[int, int]], gt: list[tuple[int, int]]) -> float:
    """The leaderboard's per-record F1 from mean precision and recall over THRESHOLDS (both lists non-empty)."""
    ious = [[lb_dvc_iou(p, g) for g in gt] for p in pred]
    precisions, recalls = [], []
    for tau in THRESHOLDS:
        precisions.append(sum(any(v > tau for v in row) for row in ious) / len(pred))
        recalls.append(sum(any(row[j] > tau for row in ious) for j in range(len(gt))) / len(gt))
    p, r = mean(precisions), mean(recalls)
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def record_f1(rid: str, record) -> float | None:
    """F1 of one record, or None when it has no parsed prediction or no GT (left out of the mean)."""
    gt = [(s.start, s.end) for s in caption_segments(record.get("struc_info"), rid)]
    parsed = parse_caption_segments(text(record.get("answer")))
    if not gt or not isinstance(parsed, CaptionSegments):
        return None
    fps = record_fps(record, rid)
    return coverage_f1(to_frames([(s.start, s.end) for s in parsed.items], fps), to_frames(gt, fps))


def evaluate_dvc(items: list[Item]) -> Metric:
    if not items:
        return not_computed("dvc_f1", "no dense_captioning records")
    f1s: dict[str, list[float]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    rows: list[tuple[str, str, float | None]] = []
    for rid, rec in items:
        dataset = record_dataset(rec)
        sizes[dataset] += 1
        f1 = record_f1(rid, rec)
        rows.append((rid, dataset, f1))
        if f1 is not None:
            f1s[dataset].append(f1)
    per_dataset = {d: mean(f1s[d]) for d in sorted(sizes)}
    value = sum(per_dataset[d] * n for d, n in sizes.items()) / sum(sizes.values())
    counted = sum(len(v) for v in f1s.values())
    details = {"records_per_dataset": dict(sorted(sizes.items())), "records_with_f1": {d: len(f1s[d]) for d in sorted(sizes)}}
    sample = Sample(tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                    np.array([[0.0, 0.0] if f1 is None else [1.0, f1] for _, _, f1 in rows]), _weighted_f1,
                    by_dataset=True)
    return Metric("dvc_f1", value, per_dataset, counted, len(items), "", details, sample)


def _weighted_f1(sums: Mapping[str, np.ndarray], sizes: Mapping[str, int]) -> np.ndarray:
    """Columns [has F1, F1]: per dataset the mean F1 of the records that have one (0 if none), weighted by the
    dataset's number of records (fixed: resampled within each dataset)."""
    total = sum(sizes.values())
    out = 0.0
    for d, s in sums.items():
        f1_d = np.where(s[:, 0] > 0, s[:, 1] / np.maximum(s[:, 0], 1e-300), 0.0)
        out = out + f1_d * sizes[d]
    return np.asarray(out) / total
