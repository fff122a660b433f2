"""Interval and box overlap measures, and one-to-one matching, shared by rewards and the evaluator.

The `lb_*` functions reproduce the leaderboard's formulas exactly (including what they do with reversed or
inverted inputs); the others are the plain definitions the training rewards use.
"""
from __future__ import annotations

from typing import Sequence

from medgrpo_ray.rewards.types import Box

Interval = tuple[float, float]


def lb_tal_iou(a: Interval, b: Interval) -> float:
    """Leaderboard TAL IoU: max(0, overlap) / (max(ends) - min(starts)); 0 if that hull is <= 0.
    A reversed interval always scores 0 (its overlap is negative)."""
    hull = max(a[1], b[1]) - min(a[0], b[0])
    if hull <= 0:
        return 0.0
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0])) / hull


def lb_dvc_iou(a: Interval, b: Interval) -> float:
    """Leaderboard DVC IoU (frames): endpoints sorted per interval; overlap / (min(hull, len1 + len2) + 1e-8)."""
    s1, e1 = sorted(a)
    s2, e2 = sorted(b)
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    hull = max(e1, e2) - min(s1, s2)
    return inter / (min(hull, (e1 - s1) + (e2 - s2)) + 1e-8)


def interval_iou(a: Interval, b: Interval) -> float:
    """Plain temporal IoU = overlap / (len1 + len2 - overlap); 0 for a reversed or empty interval."""
    if a[1] <= a[0] or b[1] <= b[0]:
        return 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def lb_box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Leaderboard box IoU on raw (x1, y1, x2, y2): overlap clipped at 0, union = area1 + area2 - overlap
    clipped below at 1e-6; no clipping to the frame, no reordering (an inverted box scores 0)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-6)


def clip_box(box: Box, frame: tuple[float, float] | None) -> Box:
    """Clip a box to [0, W] x [0, H]; with an unknown frame size only to non-negative coordinates."""
    w, h = frame if frame is not None else (float("inf"), float("inf"))
    x1, y1, x2, y2 = box
    return min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h)


def box_iou(a: Box, b: Box) -> float:
    """Plain box IoU; an inverted or empty box has area 0 and scores 0."""
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def greedy_match(ious: list[list[float]], threshold: float = 0.0) -> list[tuple[int, int, float]]:
    """One-to-one matching of rows (predictions) to columns (GT) by descending IoU; a pair is accepted when
    both are free and IoU > 0 and IoU >= threshold. Ties go to the lower (row, column). Returns (row, col, iou)."""
    pairs = sorted(
        ((iou, i, j) for i, row in enumerate(ious) for j, iou in enumerate(row) if iou > 0 and iou >= threshold),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    matched = []
    for iou, i, j in pairs:
        if i not in used_rows and j not in used_cols:
            used_rows.add(i)
            used_cols.add(j)
            matched.append((i, j, iou))
    return matched
