"""CVS (`cvs_assessment`) as the leaderboard computes it: cvs_acc.

Per dataset: for each component, exact hits / records where the component was parsed from both the answer
and the GT; component-balanced accuracy = mean over components with at least one pair (0 if none, e.g. all
answers unparseable). cvs_acc = mean of that over datasets with CVS records. `details` adds the older bucket
accuracy the first public release printed as cvs_acc: totals bucketed poor <= 1, fair <= 3, good <= 5,
excellent 6, where an empty answer totals 0 ("poor") and is correct whenever the GT total is <= 1.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from medgrpo_ray.evaluation.aggregate import mean
from medgrpo_ray.evaluation.bootstrap import Sample, balanced_accuracy, mean_over_strata
from medgrpo_ray.evaluation.types import Item, Metric, not_computed
from medgrpo_ray.rewards.fields import record_dataset, text
from medgrpo_ray.rewards.ground_truth import cvs_truth
from medgrpo_ray.rewards.parsers import parse_cvs
from medgrpo_ray.rewards.types import CvsAnswer


def bucket(total: int) -> str:
    """The older CVS rating bucket of a summed score."""
    if total <= 1:
        return "poor"
    if total <= 3:
        return "fair"
    if total <= 5:
        return "good"
    return "excellent"


def evaluate_cvs(items: list[Item]) -> Metric:
    if not items:
        return not_computed("cvs_acc", "no cvs_assessment records")
    hits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pairs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    bucket_hits: dict[str, int] = defaultdict(int)
    records: dict[str, int] = defaultdict(int)
    rows: list[tuple[str, str, dict[str, tuple[int, int]]]] = []  # (id, dataset, component -> (pair, hit))
    for rid, rec in items:
        truth = cvs_truth(rec.get("struc_info"), text(rec.get("gnd")), rid)
        if not truth:
            continue
        dataset = record_dataset(rec)
        records[dataset] += 1
        parsed = parse_cvs(text(rec.get("answer")))
        pred = dict(parsed.components) if isinstance(parsed, CvsAnswer) else {}
        row = {}
        for key, score in truth.items():
            if key in pred:
                pairs[dataset][key] += 1
                hits[dataset][key] += pred[key] == score
                row[key] = (1, int(pred[key] == score))
        rows.append((rid, dataset, row))
        bucket_hits[dataset] += bucket(sum(pred.values())) == bucket(sum(truth.values()))
    if not records:
        return not_computed("cvs_acc", f"none of {len(items)} cvs_assessment records has GT scores", len(items))
    per_dataset = {d: mean([hits[d][k] / n for k, n in pairs[d].items()]) for d in sorted(records)}
    details = {
        "bucket_acc_f098": {d: bucket_hits[d] / n for d, n in sorted(records.items())},
        "component_acc": {d: {k: hits[d][k] / n for k, n in sorted(pairs[d].items())} for d in sorted(records)},
        "skipped_no_gt": len(items) - sum(records.values()),
    }
    return Metric("cvs_acc", mean(list(per_dataset.values())), per_dataset, sum(records.values()), len(items), "",
                  details, balanced_sample(rows))


def balanced_sample(rows: list[tuple[str, str, dict[str, tuple[int, int]]]]) -> Sample:
    """Rows [pairs per component, hits per component]; the value is the component-balanced accuracy per dataset,
    averaged over datasets (resampled within each dataset). Shared with sa_acc (aspects for components)."""
    keys = sorted({k for _, _, row in rows for k in row})
    stats = np.array([[row.get(k, (0, 0))[0] for k in keys] + [row.get(k, (0, 0))[1] for k in keys]
                      for _, _, row in rows], dtype=np.float64).reshape(len(rows), 2 * len(keys))
    return Sample(tuple(r[0] for r in rows), tuple(r[1] for r in rows), stats,
                  mean_over_strata(lambda s, n: balanced_accuracy(s)), by_dataset=True)
