"""SA (`skill_assessment`) as the leaderboard computes it: sa_acc.

An answer without any `k/5` is skipped entirely. Per dataset: for every aspect, exact hits / records where
the aspect is present in both the parsed answer and the GT (names case-sensitive); aspect-balanced accuracy =
mean over the aspects that had at least one pair (0 if none). sa_acc = mean of that over the datasets with at
least one counted record. `details` adds the level accuracy that the first public release printed as sa_acc
(levels from the mean k/5; unparseable answers counted wrong there).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from medgrpo_ray.evaluation.aggregate import mean
from medgrpo_ray.evaluation.bootstrap import Sample, balanced_accuracy, mean_over_strata
from medgrpo_ray.evaluation.types import Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, text
from medgrpo_ray.rewards.ground_truth import skill_truth
from medgrpo_ray.rewards.parsers import parse_skill
from medgrpo_ray.rewards.types import SkillAnswer


def evaluate_sa(items: list[Item]) -> Metric:
    if not items:
        return not_computed("sa_acc", "no skill_assessment records")
    hits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pairs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    level_hits: dict[str, int] = defaultdict(int)
    level_total: dict[str, int] = defaultdict(int)
    counted: dict[str, int] = defaultdict(int)
    rows: list[tuple[str, str, dict[str, tuple[int, int]] | None]] = []  # None: no score parsed (skipped)
    for rid, rec in items:
        dataset = record_dataset(rec)
        level, aspects = skill_truth(rec.get("struc_info"), text(rec.get("gnd")), rid)
        parsed = parse_skill(text(rec.get("answer")))
        if level is not None:
            level_total[dataset] += 1
            level_hits[dataset] += isinstance(parsed, SkillAnswer) and parsed.level == level
        if not isinstance(parsed, SkillAnswer):
            rows.append((rid, dataset, None))
            continue
        counted[dataset] += 1
        row = {}
        for name, score in aspects.items():
            if name in parsed.aspects:
                pairs[dataset][name] += 1
                hits[dataset][name] += parsed.aspects[name] == score
                row[name] = (1, int(parsed.aspects[name] == score))
        rows.append((rid, dataset, row))
    if not counted:
        return not_computed("sa_acc", f"none of {len(items)} skill_assessment answers has a 'k/5' score", len(items))
    per_dataset = {
        d: mean([hits[d][a] / n for a, n in pairs[d].items()]) for d in sorted(counted)
    }
    details = {
        "skipped_no_score": len(items) - sum(counted.values()),
        "level_acc_f098": {d: level_hits[d] / n for d, n in sorted(level_total.items())},
        "aspect_acc": {d: {a: hits[d][a] / n for a, n in sorted(pairs[d].items())} for d in sorted(counted)},
    }
    return Metric("sa_acc", mean(list(per_dataset.values())), per_dataset, sum(counted.values()), len(items), "",
                  details, _sample(rows))


def _per_dataset(s: np.ndarray, n: int) -> np.ndarray:
    """Columns [counted, pairs.., hits..]: the aspect-balanced accuracy, NaN for a dataset with no scored answer."""
    return np.where(s[:, 0] > 0, balanced_accuracy(s[:, 1:]), np.nan)


def _sample(rows: list[tuple[str, str, dict[str, tuple[int, int]] | None]]) -> Sample:
    """Every skill_assessment record is a row (whether its answer parses is part of the chance being resampled);
    resampled within each dataset, as sa_acc averages per-dataset values."""
    keys = sorted({k for _, _, row in rows if row for k in row})
    stats = np.array([[0.0] * (1 + 2 * len(keys)) if row is None else
                      [1.0] + [row.get(k, (0, 0))[0] for k in keys] + [row.get(k, (0, 0))[1] for k in keys]
                      for _, _, row in rows], dtype=np.float64).reshape(len(rows), 1 + 2 * len(keys))
    return Sample(tuple(r[0] for r in rows), tuple(r[1] for r in rows), stats, mean_over_strata(_per_dataset),
                  by_dataset=True)
