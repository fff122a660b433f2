"""Small aggregation helpers shared by the per-task evaluators."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable


def mean(values: list[float]) -> float:
    """Arithmetic mean; 0.0 for an empty list (the leaderboard's convention for an empty group)."""
    return sum(values) / len(values) if values else 0.0


def by_dataset(pairs: Iterable[tuple[str, float]]) -> dict[str, list[float]]:
    """Group (dataset, value) pairs into dataset -> values (datasets sorted)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for dataset, value in pairs:
        groups[dataset].append(value)
    return {d: groups[d] for d in sorted(groups)}


def dataset_means(pairs: Iterable[tuple[str, float]]) -> dict[str, float]:
    """dataset -> mean of its values."""
    return {d: mean(v) for d, v in by_dataset(pairs).items()}
